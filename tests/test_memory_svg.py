"""The replay report's picture of the memory: an SVG beside the Markdown report, well-formed, drawn from the
report's own turns, and linked from the report."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console

from deltamem_chat.memory_trace import MemoryTrace
from deltamem_chat.replay import ReplayRunner, run_headless
from deltamem_chat.replay.memory_svg import memory_svg, trace_of
from deltamem_chat.transcripts import load_transcript
from tests.doubles import ScriptedEngine

SVG = "{http://www.w3.org/2000/svg}"
SMALL = Path(__file__).parent / "fixtures" / "replay_small.jsonl"


def _diagnostics(item: int) -> dict[str, float]:
    return {"beta_mean": 0.2 + 0.01 * item, "delta_o_ratio": 0.02 * item, "state_norm": 1.0,
            **{f"state_norm.{layer}": 0.5 * item + layer for layer in range(3)}}


def _replay(tmp_path: Path, markdown: Path | str) -> tuple[dict, list[str], str]:
    engine = ScriptedEngine(diagnostics=[_diagnostics(item) for item in range(1, 40)])
    runner = ReplayRunner(engine, load_transcript(SMALL))
    console = Console(file=io.StringIO(), width=120)
    report, completed, problems = run_headless(runner, {"transcript": "small"}, report_path=None,
                                               markdown_path=Path(markdown), console=console)
    assert completed
    return report, problems, console.file.getvalue()  # type: ignore[attr-defined]


def test_the_picture_lies_beside_the_markdown_and_is_well_formed(tmp_path: Path) -> None:
    markdown = tmp_path / "reports" / "r.md"
    report, problems, printed = _replay(tmp_path, markdown)
    picture = tmp_path / "reports" / "r.memory.svg"
    assert problems == [] and f"picture: {picture}" in printed
    assert "![The memory over the replay" in markdown.read_text() and "(r.memory.svg)" in markdown.read_text()
    root = ET.parse(picture).getroot()
    assert root.tag == f"{SVG}svg"
    items = len(report["turns"])
    heat = [r for r in root.iter(f"{SVG}rect") if "L" in (r.findtext(f"{SVG}title") or "").split(" · ")[0]]
    assert len(heat) == 3 * items                            # a cell per layer and item
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(title.startswith("L2 · 1. ") for title in titles)
    assert len(list(root.iter(f"{SVG}circle"))) == 2 * items   # β and ‖Δo‖/‖o‖, a point per item
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "8,192 trained horizon" in texts and f"{report['summary']['budget']['written']:,} tokens written" in texts


def test_the_trace_follows_the_report(tmp_path: Path) -> None:
    report, _, _ = _replay(tmp_path, tmp_path / "r.md")
    trace = trace_of(report)
    assert len(trace.points) == len(report["turns"])
    assert trace.points[-1].total == report["summary"]["budget"]["written"]
    assert sum(point.written for point in trace.points) == trace.points[-1].total
    items = range(1, len(trace.points) + 1)
    assert trace.series("state_norm.2") == [_diagnostics(item)["state_norm.2"] for item in items]
    assert trace_of(report, lane="frozen").points == []      # no memory, no picture


def test_markdown_on_standard_output_gets_no_picture(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _replay(tmp_path, "-")
    assert list(tmp_path.iterdir()) == []


def test_past_the_horizon_is_said_and_text_is_escaped() -> None:
    trace = MemoryTrace(horizon=100)
    for total, label in ((60, "a <b> & c"), (130, "crossing 'here'"), (150, "after")):
        trace.add(label, 60 if total == 60 else total - 60, total, {"beta_mean": 0.1, "state_norm.0": total / 10})
    root = ET.fromstring(memory_svg(trace, "title with <tags> & amps"))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "title with <tags> & amps" in texts
    assert any(text.startswith("past the horizon from crossing 'here'") for text in texts)
    line = next(root.iter(f"{SVG}line"))
    bar = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "#eee"][0]
    share = (float(line.get("x1")) - float(bar.get("x"))) / float(bar.get("width"))
    assert abs(share - 100 / 150) < 0.01                    # the horizon at 100 of the 150 written
