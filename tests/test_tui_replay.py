"""The replay screen: pilot tests on the tiny offline engine, and a scripted engine where answers must be chosen."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot
from typer.testing import CliRunner

from deltamem.runtime.contract import GenerationSettings, SessionIdentity
from deltamem_chat.replay import ReplayRunner
from deltamem_chat.transcripts import load_transcript
from deltamem_chat.tui import DeltaMemApp, LoadingScreen, ReplayScreen, run_replay
from deltamem_chat.tui.replay import SummaryScreen
from deltamem_chat.tui.screens import ChoiceDialog
from tests.conftest import make_engine
from tests.doubles import ScriptedEngine
from tests.tui_harness import (  # noqa: F401 (one_torch_thread: an autouse fixture)
    SIZE,
    RecordingApp,
    one_torch_thread,
    open_dialog,
    press,
    run,
    texts,
    until,
)

SMALL = Path(__file__).parent / "fixtures" / "replay_small.jsonl"
IDENTITY = SessionIdentity("tiny/base", "tiny/adapter")
CONFIG = {"transcript": str(SMALL), "title": "Small replay", "device": "cpu", "dtype": "float32",
          "context_policy": "window:120", "lanes": ["frozen", "delta"]}
ITEMS = 11
FIRST_PROBE = 6  # items done once the first probe has been answered

#: The small transcript's questions, answered so that only δ-mem recalls the sister's name.
ANSWERS = {"What is my sister called?": {"frozen": "I do not know.", "delta": "Her name is Maren."},
           "Where does my sister live?": {"frozen": "In Tromso.", "delta": "She lives in Tromso."}}


def scripted(answers: Mapping[str, Mapping[str, str]] = ANSWERS, **kwargs: Any) -> ScriptedEngine:
    """The engine double under a real `ReplayRunner`: chosen answers, one write per character read or answered."""
    return ScriptedEngine(answers, **kwargs)


def replay_app(runner: ReplayRunner, **kwargs: Any) -> tuple[RecordingApp, ReplayScreen]:
    """The app on a replay screen over `runner`, and the screen."""
    replay = ReplayScreen(runner, CONFIG, identity=IDENTITY, **kwargs)
    return RecordingApp(replay), replay


def tiny_runner(**kwargs: Any) -> ReplayRunner:
    """The small transcript on the tiny offline engine, short answers."""
    return ReplayRunner(make_engine(policy="window:120"), load_transcript(SMALL),
                        settings=GenerationSettings(max_new_tokens=6), **kwargs)


def scripted_runner(engine: ScriptedEngine | None = None, **kwargs: Any) -> ReplayRunner:
    return ReplayRunner(engine or scripted(), load_transcript(SMALL), **kwargs)


async def jump(pilot: Pilot, item: int | str) -> None:
    await open_dialog(pilot, "j", str(item))
    await press(pilot, "enter")


# -------------------------------------------------------------------------------------- tiny engine
def test_step_jump_play_and_restart_on_the_tiny_engine() -> None:
    runner = tiny_runner()
    engine = runner.engine
    app, replay = replay_app(runner)

    async def scenario(pilot: Pilot) -> None:
        frozen, delta = replay.panes["frozen"], replay.panes["delta"]
        await press(pilot, "n")
        assert runner.position == 1 and texts(delta, "note") == ["system: You are brief."] == texts(frozen, "note")
        await press(pilot, "space")
        assert texts(frozen, "user") == texts(delta, "user") == ["My sister is called Maren."]
        assert replay.status.info["item"] == f"2/{ITEMS}" and replay.status.info["state"] == "paused"
        await press(pilot, "n")
        assert texts(delta, "reply") == ["Noted: Maren."] and delta.query(".reply").last().has_class("-recorded")
        await jump(pilot, FIRST_PROBE)
        assert runner.position == FIRST_PROBE
        for pane in (frozen, delta):
            verdict = texts(pane, "meta")[-1]
            assert ("hit" in verdict or "miss" in verdict) and "F1" in verdict and "expected: Maren" in verdict
            assert pane.last_reply == runner.records[-1].lanes[pane.lane].text
        assert replay.meter.written == engine.lanes["delta"].written_total > 0 and not replay.meter.estimated
        await press(pilot, "p")
        assert runner.finished and isinstance(app.screen, SummaryScreen)
        assert replay.meter.written == engine.lanes["delta"].written_total == runner.budget()["written"]
        await pilot.press("escape")
        await press(pilot, "r")
        assert runner.position == 0 and replay.meter.written == 0 == engine.lanes["delta"].written_total
        assert all(not pane.children for pane in replay.panes.values())
        await jump(pilot, 4)
        await jump(pilot, 2)
        assert runner.position == 2 and texts(delta, "user") == ["My sister is called Maren."]
        assert replay.meter.written == engine.lanes["delta"].written_total

    run(app, scenario)


def test_without_ab_only_the_delta_pane_replays() -> None:
    runner = tiny_runner(lanes=["delta"])
    app, replay = replay_app(runner)

    async def scenario(pilot: Pilot) -> None:
        await jump(pilot, FIRST_PROBE)
        frozen, delta = replay.panes["frozen"], replay.panes["delta"]
        assert frozen.has_class("-paused") and not texts(frozen, "user") and not texts(frozen, "reply")
        assert "--ab" in texts(frozen, "note")[0]
        assert len(texts(delta, "user")) == 3 and "expected: Maren" in texts(delta, "meta")[-1]
        await pilot.press("s")
        assert "frozen" not in str(app.screen.query_one("#summary-lanes").render())

    run(app, scenario)


# -------------------------------------------------------------------------------------- scripted engine
def test_a_probe_shows_verdicts_and_flags_lanes_that_differ() -> None:
    app, replay = replay_app(scripted_runner())

    async def scenario(pilot: Pilot) -> None:
        await jump(pilot, FIRST_PROBE)
        frozen, delta = replay.panes["frozen"], replay.panes["delta"]
        assert frozen.last_reply == "I do not know." and delta.last_reply == "Her name is Maren."
        assert texts(frozen, "meta")[-1].endswith("✗ miss · F1 0.00 · expected: Maren")
        assert texts(delta, "meta")[-1].endswith("✓ hit · F1 0.40 · expected: Maren")
        assert frozen.query(".reply").last().has_class("-bad") and delta.query(".reply").last().has_class("-good")
        assert texts(frozen, "flag") == texts(delta, "flag") == ["⚑ lanes differ"]
        assert delta.border_subtitle == "recall 1/1 · F1 0.40" and frozen.border_subtitle == "recall 0/1 · F1 0.00"
        await press(pilot, "p")  # the second probe: both hit, no flag
        assert texts(delta, "flag") == ["⚑ lanes differ"] and frozen.query(".reply").last().has_class("-good")

    run(app, scenario)


def test_regenerated_turns_stream_each_lanes_own_reply_and_flag_differences() -> None:
    answers = {"My sister is called Maren.": {"frozen": "Nice.", "delta": "Noted."}} | ANSWERS
    app, replay = replay_app(scripted_runner(scripted(answers), regenerate=True))

    async def scenario(pilot: Pilot) -> None:
        await jump(pilot, 3)
        frozen, delta = replay.panes["frozen"], replay.panes["delta"]
        assert texts(frozen, "reply") == ["Nice."] and texts(delta, "reply") == ["Noted."]
        assert texts(delta, "flag") == ["⚑ lanes differ"] and "recorded" not in " ".join(texts(delta, "meta"))
        assert texts(delta, "meta") == ["1 tokens · 32 written"]

    run(app, scenario)


def test_pause_stops_playing_after_the_current_item_and_escape_cancels() -> None:
    engine = scripted({"What is my sister called?": {"frozen": "a " * 2000, "delta": "b " * 2000}},
                            delay=0.01)
    runner = scripted_runner(engine)
    app, replay = replay_app(runner)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("p")
        await until(pilot, lambda: replay.panes["delta"].streaming)  # the first probe, streaming slowly
        assert replay.meter.estimated and replay.status.info["state"] == "playing"
        await pilot.press("p")
        assert replay.status.info["state"] == "pausing after this item"
        assert replay.check_action("step", ()) is None and replay.check_action("export", ()) is None
        await pilot.press("escape")
        await until(pilot, lambda: not replay.busy)
        assert runner.position == FIRST_PROBE and replay.status.info["state"] == "paused"
        assert runner.records[-1].lanes["delta"].cancelled
        await jump(pilot, "²")  # a digit to str.isdigit, not to int
        assert app.is_running and runner.position == FIRST_PROBE and "Not an item number" in app.notes[-1][0]
        assert replay.panes["delta"].query(".reply").last().has_class("-cancelled")
        assert replay.meter.written == engine.lanes["delta"].written_total and not replay.meter.estimated
        await press(pilot, "p")
        assert runner.finished and isinstance(app.screen, SummaryScreen)

    run(app, scenario)


def test_export_writes_json_and_markdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report, markdown = tmp_path / "out" / "replay.json", tmp_path / "out" / "replay.md"
    app, replay = replay_app(scripted_runner(), report_path=report, markdown_path=markdown)
    monkeypatch.chdir(tmp_path)

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "p")
        await pilot.press("e")  # from the summary screen
        assert app.notes[-1] == (f"Report: {report}\nMarkdown: {markdown}", "information")
        replay.report_path = replay.markdown_path = None
        await pilot.press("e")
        assert len(list(tmp_path.glob("replay-*.json"))) == len(list(tmp_path.glob("replay-*.md"))) == 1
        replay.report_path = tmp_path / "out" / "replay.json" / "nested.json"  # a file where a folder should be
        await pilot.press("e")
        assert app.notes[-1][1] == "error" and app.is_running

    run(app, scenario)
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["partial"] is False and {"config", "turns", "probes", "summary"} <= set(data)
    assert len(data["turns"]) == ITEMS and len(data["probes"]) == 2
    assert data["summary"]["lanes"]["delta"]["recall"] == 1.0 and data["summary"]["disagreements"] == [0]
    assert "⚑ lanes differ" in markdown.read_text(encoding="utf-8")
    assert "(replay.memory.svg)" in markdown.read_text(encoding="utf-8")   # the picture beside it, well-formed
    assert ET.parse(markdown.with_name("replay.memory.svg")).getroot().tag == "{http://www.w3.org/2000/svg}svg"


async def vote(pilot: Pilot, key: str) -> None:
    """F8, then the choice's number key."""
    await pilot.press("f8")
    await until(pilot, lambda: isinstance(pilot.app.screen, ChoiceDialog))
    await pilot.press(key)
    await until(pilot, lambda: not isinstance(pilot.app.screen, ChoiceDialog))


def test_votes_on_probes_are_shown_tallied_and_exported(tmp_path: Path) -> None:
    report, markdown = tmp_path / "replay.json", tmp_path / "replay.md"
    app, replay = replay_app(scripted_runner(), report_path=report, markdown_path=markdown)

    async def scenario(pilot: Pilot) -> None:
        assert replay.check_action("vote", ()) is None            # nothing answered yet
        await jump(pilot, FIRST_PROBE)
        await vote(pilot, "1")                                    # frozen better, then changed to δ-mem better
        await vote(pilot, "2")
        assert replay.status.note == "votes: frozen 0 · δ-mem 1 · tie 0 · both wrong 0"
        for pane in (replay.panes[lane] for lane in replay.lanes):
            assert texts(pane, "vote") == ["vote: δ-mem better"]
        await press(pilot, "p")                                   # to the end: the summary opens
        summary = app.screen
        assert isinstance(summary, SummaryScreen)
        probes = [str(probe.render()) for probe in summary.query(".summary-probe")]
        assert "vote      δ-mem better" in probes[0] and "vote" not in probes[1]   # on the first probe only
        await pilot.press("escape")
        await vote(pilot, "3")
        assert replay.status.note == "votes: frozen 0 · δ-mem 1 · tie 1 · both wrong 0"
        assert texts(replay.panes["delta"], "vote") == ["vote: δ-mem better", "vote: tie"]
        await pilot.press("e")

    run(app, scenario)
    data = json.loads(report.read_text(encoding="utf-8"))
    votes = data["votes"]
    assert votes["tally"] == {"frozen": 0, "delta": 1, "tie": 1, "wrong": 0}
    assert [(v["item"], v["probe"], v["vote"]) for v in votes["cast"]] == [(FIRST_PROBE - 1, 0, "delta"),
                                                                         (ITEMS - 1, 1, "tie")]
    assert [p["vote"] for p in data["probes"]] == ["δ-mem better", "tie"]
    assert all({"hit", "f1"} <= set(answer) for p in data["probes"] for answer in p["answers"].values())
    text = markdown.read_text(encoding="utf-8")
    assert "## Votes" in text and "| δ-mem better | 1 |" in text and "| tie | 1 |" in text
    assert "| 6 | probe 1: What is my sister called? | δ-mem better |" in text
    first = text.index("### 1. What is my sister called?")
    assert text.index("Vote: **δ-mem better**", first) < text.index("### 2.", first)


@pytest.mark.parametrize("regenerate", [False, True])
def test_a_generated_turn_takes_a_vote_and_a_recorded_one_does_not(regenerate: bool) -> None:
    app, replay = replay_app(scripted_runner(regenerate=regenerate))

    async def scenario(pilot: Pilot) -> None:
        await jump(pilot, 5)                                  # the second assistant turn is the last done
        if not regenerate:
            assert replay.check_action("vote", ()) is None
            return
        await vote(pilot, "1")
        assert replay.votes.cast == {4: "frozen"}
        assert any(note == "Item 5: frozen better." for note, _ in app.notes)
        await press(pilot, "r")                               # a restart forgets the votes
        assert replay.votes.cast == {} and replay.status.note == ""

    run(app, scenario)


def test_quitting_mid_replay_writes_a_partial_report(tmp_path: Path) -> None:
    report = tmp_path / "partial.json"
    runner = scripted_runner(scripted({"What is my sister called?": {"delta": "b " * 500}}, delay=0.01))
    app, replay = replay_app(runner, report_path=report)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("p")
        await until(pilot, lambda: replay.panes["delta"].streaming)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)

    run(app, scenario)
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["partial"] is True and data["summary"]["items_replayed"] == FIRST_PROBE < ITEMS
    assert app.return_code == 0


def test_the_summary_passes_export_and_quit_to_the_replay(tmp_path: Path) -> None:
    report = tmp_path / "done.json"
    app, _ = replay_app(scripted_runner(), report_path=report)

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "p")
        summary = app.screen
        assert isinstance(summary, SummaryScreen) and summary.check_action("export", ()) is True
        assert [entry[1] for entry in summary.PALETTE] == ["export"]
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)

    run(app, scenario)
    assert json.loads(report.read_text(encoding="utf-8"))["partial"] is False and app.return_code == 0


def test_a_report_that_cannot_be_written_keeps_the_app_open_once(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    app, _ = replay_app(scripted_runner(), report_path=tmp_path / "file" / "report.json")

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "n")
        await pilot.press("q")
        assert app.is_running and app.notes[-2][1] == "error" and "q again" in app.notes[-1][0]
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)

    run(app, scenario)
    assert app.return_code == 1


def test_an_engine_error_is_a_notification_and_restart_recovers() -> None:
    engine = scripted(fail=RuntimeError("CUDA out of memory [simulated]"))
    runner = scripted_runner(engine)
    app, replay = replay_app(runner)

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "p")
        assert app.notes[-1] == ("CUDA out of memory [simulated]", "error")
        assert runner.position == FIRST_PROBE - 1 and replay.status.info["state"].startswith("stopped")
        assert all(pane.query(".reply").last().has_class("-failed") for pane in replay.panes.values())
        await press(pilot, "n")
        assert runner.position == FIRST_PROBE - 1 and app.notes[-1][1] == "warning"
        engine.fail = None
        await press(pilot, "r")
        await press(pilot, "p")
        assert runner.finished and isinstance(app.screen, SummaryScreen)

    run(app, scenario)


def test_palette_runs_replay_commands() -> None:
    runner = scripted_runner()
    app, _ = replay_app(runner)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"step")
        await pilot.pause(0.3)
        await press(pilot, "enter")
        assert runner.position == 1

    run(app, scenario)


def test_the_replay_command_opens_the_screen(tiny_model_dirs: tuple[Path, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from deltamem_chat.cli import app as cli

    started: list[DeltaMemApp] = []
    monkeypatch.setattr(DeltaMemApp, "run", lambda app: started.append(app))
    base, adapter = tiny_model_dirs
    result = CliRunner().invoke(cli, ["replay", str(SMALL), "--ab", "--adapter", str(adapter), "--base", str(base),
                                      "--device", "cpu", "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    loading = started[0].first
    assert isinstance(loading, LoadingScreen) and started[0].main is None, "the app opens before the model loads"
    replay = loading.prepare(lambda step: None).view()
    assert isinstance(replay, ReplayScreen) and started[0].title == "deltamem-chat replay"
    assert replay.lanes == ["frozen", "delta"] and replay.report_path == tmp_path / "r.json"
    assert replay.runner.engine.policy.tokens == 120 and replay.info["models"] == "base + adapter"
    assert run_replay(replay.runner, CONFIG, identity=IDENTITY, report_path=None, markdown_path=None) == 0


# -------------------------------------------------------------------------------------- snapshots
def test_snapshot_at_a_probe(snap_compare: Callable[..., bool]) -> None:
    app, _ = replay_app(scripted_runner())

    async def run_before(pilot: Pilot) -> None:
        await jump(pilot, FIRST_PROBE)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_summary(snap_compare: Callable[..., bool]) -> None:
    app, _ = replay_app(scripted_runner())

    async def run_before(pilot: Pilot) -> None:
        await press(pilot, "p")
        await until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
