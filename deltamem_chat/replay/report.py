"""The replay report: one JSON document (config, turns, probes, summary), and its Markdown and Rich views."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from deltamem import __version__
from deltamem.files import atomic_write_text
from deltamem.runtime.contract import LANE_TITLES, has_retrieval
from deltamem_chat.replay.runner import ReplayRunner
from deltamem_chat.text import one_line
from deltamem_chat.votes import choices, counts

TIMING_FIELDS = ("ttft_s", "tokens_per_s")
#: Per turn, what the memory lanes reported; their last digits depend on how the lanes were batched.
MEMORY_FIELD = "memory"


def versions() -> dict[str, str]:
    """Versions that change numbers: ours, torch, transformers, Python."""
    import torch
    import transformers

    return {"deltamem": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def build_report(runner: ReplayRunner, config: dict[str, Any], *, partial: bool,
                 votes: Mapping[int, str] | None = None) -> dict[str, Any]:
    """Everything a reader needs to judge the replay, as plain JSON data; `votes` are a reader's (item index → the
    choice, `deltamem_chat.votes`), cast in the replay screen."""
    summary = runner.summary()
    votes = votes or {}
    voted = vote_summary(runner, votes)
    turns = [{
        "index": r.index, "kind": r.kind, "role": r.role, "text": r.text, "differs": r.differs,
        "lanes": {name: asdict(step) for name, step in r.lanes.items()},
        MEMORY_FIELD: {"written_total": r.written_total, "diagnostics": r.diagnostics},
    } for r in runner.records]
    probes = []
    for record in runner.records:
        outcome = record.outcome
        if outcome is None:
            continue
        probe = runner.transcript.items[record.index]
        probes.append({
            "index": outcome.probe_index, "item": record.index, "question": outcome.question, "asked": record.text,
            "expected": outcome.expected, "aliases": list(getattr(probe, "aliases", ())),
            "category": outcome.category, "abstain": getattr(probe, "abstain", False),
            "depends_on": getattr(probe, "depends_on", None), "differs": outcome.disagrees,
            "vote": voted["labels"][votes[record.index]] if record.index in votes else None,
            "answers": {lane: {"answer": outcome.answers[lane], "hit": score.hit, "f1": round(score.f1, 4),
                               "score": round(score.score, 4)}
                        for lane, score in outcome.scores.items()},
            "retrieval": {lane: {"evidence": step.evidence, "retrieved": [r["message"] for r in step.retrieved]}
                          for lane, step in record.lanes.items() if has_retrieval(lane)},
        })
    lanes = {name: {"recall": round(s.recall, 4), "mean_f1": round(s.mean_f1, 4), "score": round(s.mean_score, 4),
                    "probes": s.probes, "hits": s.hits, "written_tokens": runner.engine.lane(name).written_total,
                    "categories": {str(c): {"probes": v.probes, "hits": v.hits, "score": round(v.mean_score, 4)}
                                   for c, v in s.categories.items()}}
             for name, s in summary.lanes.items()}
    for name, lane in lanes.items():
        if has_retrieval(name):
            lane["retrieval"] = evidence_summary(runner, name)
    return {
        "partial": partial,
        "config": {**config, "versions": versions()},
        "turns": turns,
        "probes": probes,
        "votes": voted,
        "summary": {
            "lanes": lanes,
            "disagreements": [o.probe_index for o in summary.disagreements],
            "items_replayed": runner.position,
            "items_total": len(runner.transcript.items),
            "budget": runner.budget(),
        },
    }


def vote_summary(runner: ReplayRunner, votes: Mapping[int, str]) -> dict[str, Any]:
    """The choices offered, how many votes each got, and each vote with the item it was cast on (none cast: the
    tally is all 0 and the list empty)."""
    labels = choices({lane: LANE_TITLES.get(lane, lane) for lane in runner.lanes})
    cast: dict[int, str] = {}
    listed = []
    for record in runner.records:
        choice = votes.get(record.index)
        if choice is None:
            continue
        cast[record.index] = choice
        outcome = record.outcome
        listed.append({"item": record.index, "kind": "probe" if outcome else "assistant turn",
                       "probe": outcome.probe_index if outcome else None, "text": record.text, "vote": choice,
                       "label": labels[choice]})
    return {"labels": labels, "tally": counts(cast, labels), "cast": listed}


def evidence_counts(verdicts: list[str | None]) -> dict[str, Any]:
    """How often a retrieval lane's retrieved messages held a probe's evidence (`depends_on`) once it had left the
    window: recall@k is found / (found + missed); probes whose evidence was still in the window are counted apart."""
    found, missed = verdicts.count("found"), verdicts.count("missed")
    return {"found": found, "missed": missed, "in_window": verdicts.count("in window"),
            "recall_at_k": round(found / (found + missed), 4) if found + missed else None}


def evidence_summary(runner: ReplayRunner, lane: str) -> dict[str, Any]:
    """`evidence_counts` over the probes a replay answered."""
    return evidence_counts([record.lanes[lane].evidence for record in runner.records
                            if record.outcome is not None and lane in record.lanes])


def recall_at_k_cell(lane: dict[str, Any]) -> str:
    """A lane's retrieval recall@k for the tables: `found/dropped`, or a dash for lanes without retrieval."""
    retrieval = lane.get("retrieval")
    if retrieval is None or retrieval["recall_at_k"] is None:
        return "-"
    return f"{retrieval['recall_at_k']:.3f} ({retrieval['found']}/{retrieval['found'] + retrieval['missed']})"


def without_timings(report: dict[str, Any]) -> dict[str, Any]:
    """The report with wall-clock fields (and the memory diagnostics' float noise) removed, for comparing runs."""
    copy = json.loads(json.dumps(report))
    for turn in copy["turns"]:
        turn.pop(MEMORY_FIELD, None)
        for lane in turn["lanes"].values():
            for key in TIMING_FIELDS:
                lane.pop(key, None)
    copy["config"].pop("versions", None)
    return copy


def write_json(report: dict[str, Any], path: Path) -> Path:
    return atomic_write_text(path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def to_markdown(report: dict[str, Any], picture: str | None = None) -> str:
    """A short human report: summary per lane, the memory's picture (`picture`, an SVG file beside the report),
    then the probes with the disagreements first."""
    config, summary = report["config"], report["summary"]
    lines = [f"# Replay: {config.get('title') or config.get('transcript')}", ""]
    if report["partial"]:
        lines += [f"**Partial report**: stopped after {summary['items_replayed']} of {summary['items_total']} items.",
                  ""]
    lines += [f"- base: `{config.get('base')}`, adapter: `{config.get('adapter')}`",
              f"- context: `{config.get('context_policy')}`, "
              f"lanes: {', '.join(config.get('lanes', []))} ({config.get('batching')}), "
              f"assistant turns: {config.get('assistant_turns')}, dates: {config.get('dates', 'on')}, "
              f"dtype: {config.get('dtype')}, "
              f"seed: {config.get('seed')}",
              f"- memory written: {summary['budget']['written']:,} / {summary['budget']['horizon']:,} tokens "
              f"({summary['budget']['status']})", "",
              "| lane | recall | mean F1 | probes | written tokens | evidence retrieved |", "|---|---|---|---|---|---|"]
    for name, lane in summary["lanes"].items():
        lines.append(f"| {LANE_TITLES.get(name, name)} | {lane['recall']:.3f} | {lane['mean_f1']:.3f} | "
                     f"{lane['probes']} | {lane['written_tokens']:,} | {recall_at_k_cell(lane)} |")
    lines += _votes_markdown(report.get("votes"))
    if picture:
        lines += ["", "## Memory", "", f"![The memory over the replay: per-layer state norms, mean β, ‖Δo‖/‖o‖ and "
                                       f"the writes against the horizon]({picture})"]
    lines += ["", "## Probes (lanes that disagree first)", ""]
    ordered = sorted(report["probes"], key=lambda p: (not p["differs"], p["index"]))
    for probe in ordered:
        mark = " ⚑ lanes differ" if probe["differs"] else ""
        lines += [f"### {probe['index'] + 1}. {probe['question']}{mark}", "", f"Expected: **{probe['expected']}**", ""]
        if probe.get("vote"):
            lines += [f"Vote: **{probe['vote']}**", ""]
        for lane, answer in probe["answers"].items():
            verdict = "hit" if answer["hit"] else "miss"
            evidence = probe.get("retrieval", {}).get(lane, {}).get("evidence")
            found = f", evidence {evidence}" if evidence else ""
            lines.append(f"- {LANE_TITLES.get(lane, lane)}: {verdict}{found}, F1 {answer['f1']:.2f}: "
                         f"{one_line(answer['answer'], 160)}")
        lines.append("")
    return "\n".join(lines)


def _votes_markdown(votes: dict[str, Any] | None) -> list[str]:
    """The tally and the votes cast, item by item (nothing when none was cast)."""
    if not votes or not votes["cast"]:
        return []
    lines = ["", "## Votes", "", "| vote | count |", "|---|---|"]
    lines += [f"| {votes['labels'][choice]} | {count} |" for choice, count in votes["tally"].items()]
    lines += ["", "| item | turn | vote |", "|---|---|---|"]
    for vote in votes["cast"]:
        turn = f"probe {vote['probe'] + 1}" if vote["probe"] is not None else vote["kind"]
        lines.append(f"| {vote['item'] + 1} | {turn}: {one_line(vote['text'], 60)} | {vote['label']} |")
    return lines


def summary_table(report: dict[str, Any]) -> Table:
    """The end-of-replay table for the terminal, the lanes titled as the screens title them."""
    table = Table(title="Recall probes" + (" (partial)" if report["partial"] else ""))
    for column in ("lane", "recall", "mean F1", "probes", "written tokens", "evidence retrieved"):
        table.add_column(column, justify="left" if column == "lane" else "right")
    for name, lane in report["summary"]["lanes"].items():
        table.add_row(LANE_TITLES.get(name, name), f"{lane['recall']:.3f}", f"{lane['mean_f1']:.3f}",
                      str(lane["probes"]), f"{lane['written_tokens']:,}", recall_at_k_cell(lane))
    return table

