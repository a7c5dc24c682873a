"""The eval's summary: per condition and lane, the protocol's mean score overall and per category, as data, a
terminal table and Markdown (the layout of the paper's tables: one row per lane and condition).

The totals are `deltamem_chat.scoring.summarise`'s, over the outcomes read back from the results file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from deltamem_chat.eval.plan import EvalSettings
from deltamem_chat.replay.report import evidence_counts, recall_at_k_cell
from deltamem_chat.scoring import LaneSummary, ProbeOutcome, ProbeScore, summarise


def outcomes(results: list[dict[str, Any]], condition: str, protocol: str) -> list[ProbeOutcome]:
    """The probes answered under one condition, as the outcomes they were when scored (numbered across units)."""
    probes = [p for r in results if r["condition"] == condition for p in r["probes"]]
    return [ProbeOutcome(index, p["question"], p["expected"], {lane: a["answer"] for lane, a in p["answers"].items()},
                         {lane: ProbeScore(a["hit"], a["f1"], a["score"], a.get("metrics") or {})
                          for lane, a in p["answers"].items()}, p["category"], protocol)
            for index, p in enumerate(probes)]


def _lane(summary: LaneSummary) -> dict[str, Any]:
    """Rounded to 4 decimals, as the official summaries round their means."""
    return {"probes": summary.probes, "score": round(summary.mean_score, 4), "recall": round(summary.recall, 4),
            "mean_f1": round(summary.mean_f1, 4),
            "categories": {str(c): {"probes": v.probes, "score": round(v.mean_score, 4)}
                           for c, v in summary.categories.items()}}


def summarise_results(results: list[dict[str, Any]], settings: EvalSettings,
                      names: Mapping[Any, str]) -> dict[str, Any]:
    """Per condition and lane: the mean score, recall and mean F1, overall and per category (`names` labels them,
    LoCoMo's 1 → multi_hop …)."""
    conditions = {}
    categories: dict[str, str] = {}
    for condition in settings.conditions:
        summary = summarise(outcomes(results, condition, settings.protocol))
        conditions[condition] = {lane: _lane(values) for lane, values in summary.lanes.items()}
        probes = [p for r in results if r["condition"] == condition for p in r["probes"]]
        for lane, values in conditions[condition].items():
            verdicts = [p["retrieval"][lane]["evidence"] for p in probes if lane in p.get("retrieval", {})]
            if verdicts:
                values["retrieval"] = evidence_counts(verdicts)
        for values in summary.lanes.values():
            for category in values.categories:
                categories.setdefault(str(category), names.get(category, "none" if category is None else str(category)))
    return {"protocol": settings.protocol, "categories": categories, "conditions": conditions}


def _retrieving(summary: dict[str, Any]) -> bool:
    """Whether any lane retrieved (then the tables get a recall@k column)."""
    return any("retrieval" in lane for lanes in summary["conditions"].values() for lane in lanes.values())


def _cells(lane: dict[str, Any], categories: Mapping[str, str], retrieving: bool) -> list[str]:
    cells = [f"{lane['score']:.4f}"]
    for key in categories:
        here = lane["categories"].get(key)
        cells.append("—" if here is None else f"{here['score']:.4f} ({here['probes']})")
    return cells + [str(lane["probes"])] + ([recall_at_k_cell(lane)] if retrieving else [])


def _header(summary: dict[str, Any]) -> list[str]:
    return ["condition", "lane", "overall", *summary["categories"].values(), "probes",
            *(["evidence recall@k"] if _retrieving(summary) else [])]


def _rows(summary: dict[str, Any]) -> list[list[str]]:
    retrieving = _retrieving(summary)
    return [[condition, lane, *_cells(values, summary["categories"], retrieving)]
            for condition, lanes in summary["conditions"].items() for lane, values in lanes.items()]


def summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for column in _header(summary):
        table.add_column(column, justify="left" if column in ("condition", "lane") else "right")
    for row in _rows(summary):
        table.add_row(*row)
    return table


def to_markdown(summary: dict[str, Any], title: str, notes: list[str]) -> str:
    header = _header(summary)
    lines = [f"# {title}", "", *[f"- {note}" for note in notes], "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(summary)]
    return "\n".join(lines) + "\n"
