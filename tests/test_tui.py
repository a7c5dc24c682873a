"""The Textual chat: pilot tests on the tiny offline engine, and snapshots of a scripted (deterministic) engine."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

from deltamem import DeltaMemConfig, DeltaMemModel, OffTrainedDefaultsWarning
from deltamem.context import ContextPolicy
from deltamem.runtime.contract import (
    LANE_NAMES,
    Event,
    GenerationSettings,
    LaneDone,
    LaneView,
    SessionIdentity,
    TokenEvent,
    TurnStats,
)
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel, choose_runtime
from deltamem.runtime.offline_tokenizer import byte_chatml_tokenizer
from deltamem.shapes import random_backbone, randomize_adapter
from deltamem_chat.tui import BudgetMeter, DeltaMemChatApp, LanePane, run_chat
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.feed import TextDelta, TurnFeed
from deltamem_chat.tui.screens import PromptDialog
from deltamem_chat.tui.widgets import ChatInput
from tests.doubles import ScriptedEngine

SIZE = (120, 40)
INFO = {"models": "tiny random + random adapter", "device": "cpu · float32 · sdpa"}
IDENTITY = SessionIdentity("tiny-random", "random-adapter")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from threads, and on a shared 2-core machine they spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_engine(cls: type[ABEngine] = ABEngine) -> ABEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        model = DeltaMemModel(random_backbone("tiny", attn="sdpa"),
                              DeltaMemConfig(output_init="base_slice_fixed", delta_heads=("q", "o")))
    randomize_adapter(model, seed=1)
    return cls(model, byte_chatml_tokenizer(), policy=ContextPolicy.parse("window:1024"))


class SlowEngine(ABEngine):
    """The real engine, a few milliseconds per token, so a test can press Escape well before the reply ends."""

    def turn(self, *args: object, **kwargs: object) -> Iterator[Event]:
        for event in super().turn(*args, **kwargs):
            if isinstance(event, TokenEvent):
                time.sleep(0.005)
            yield event


#: What the scripted engine's lanes say, piece by piece, unless a test chooses.
HELLO = ("Hello", ",", " Ada", ".")


def scripted(pieces: Sequence[str] = HELLO, *, prompt_written: int = 30, **kwargs: Any) -> ScriptedEngine:
    """The engine double for the chat: every lane streams `pieces`; a memory lane writes the prompt, then a piece a
    token."""
    return ScriptedEngine(pieces=pieces, prompt_written=prompt_written, **kwargs)


class RecordingApp(DeltaMemChatApp):
    """The app, keeping every notification so tests can read them."""

    def __init__(self, engine: object, max_new_tokens: int = 24, intro: str | None = None) -> None:
        super().__init__(engine, title_info=INFO, identity=IDENTITY,  # type: ignore[arg-type]
                         settings=GenerationSettings(max_new_tokens=max_new_tokens), intro=intro)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, **kwargs: object) -> None:
        self.notes.append((message, str(kwargs.get("severity", "information"))))
        super().notify(message, **kwargs)  # type: ignore[arg-type]


def run(app: DeltaMemChatApp, scenario: Callable[[Pilot], object]) -> None:
    """Run a pilot scenario to completion (no async test plugin needed)."""

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)  # type: ignore[misc]

    asyncio.run(main())


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


async def say(pilot: Pilot, text: str) -> None:
    """Type a message, press Enter and wait for the turn to end."""
    await pilot.press(*text, "enter")
    await until(pilot, lambda: not pilot.app.busy)


async def answer_dialog(pilot: Pilot, key: str, value: str) -> None:
    """Open a dialog with its key, type `value` over the default and submit it."""
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, PromptDialog))
    pilot.app.screen.query_one(Input).value = value
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(pilot.app.screen, PromptDialog))


def meter(app: DeltaMemChatApp) -> BudgetMeter:
    return app.query_one(BudgetMeter)


def replies(pane: LanePane) -> list[str]:
    return [reply.text for reply in pane.query(".reply").results()]  # type: ignore[attr-defined]


def notes(pane: LanePane) -> list[str]:
    return [str(note.render()) for note in pane.query(".note").results()]  # type: ignore[attr-defined]


# -------------------------------------------------------------------------------------- tiny engine
def test_a_message_streams_into_both_panes_and_the_meter_ends_exact() -> None:
    engine = tiny_engine()
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "my name is Ada")
        for name, pane in app.panes.items():
            lane = engine.lanes[name]
            assert [m["role"] for m in lane.messages] == ["user", "assistant"]
            assert pane.last_reply == lane.messages[-1]["content"]
            assert not pane.streaming
        written = engine.lanes["delta"].written_total
        assert written > 0 and meter(app).written == written and not meter(app).estimated
        assert meter(app).increment == written and meter(app).status == "ok"
        assert set(meter(app).diagnostics) == {"beta_mean", "delta_o_ratio", "state_norm"}
        await say(pilot, "what is my name?")
        assert meter(app).written == engine.lanes["delta"].written_total > written
        assert meter(app).increment == engine.lanes["delta"].written_total - written
        assert app.query_one(ChatInput).history == ["my name is Ada", "what is my name?"]

    run(app, scenario)


def test_escape_cancels_and_the_lanes_stay_usable() -> None:
    engine = tiny_engine(SlowEngine)
    app = RecordingApp(engine, max_new_tokens=400)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press(*"tell me everything", "enter")
        await until(pilot, lambda: bool(app.panes["frozen"].last_reply))
        await pilot.press("escape")
        await until(pilot, lambda: not app.busy)
        last = {name: engine.lanes[name].turns[-1] for name in engine.lanes}
        assert any(stats.cancelled for stats in last.values())
        for name, stats in last.items():
            assert stats.tokens < 400
            reply = app.panes[name].query(".reply").last()
            assert reply.has_class("-cancelled") == stats.cancelled
            assert reply.text == engine.lanes[name].messages[-1]["content"]  # the partial reply stays
        assert meter(app).written == engine.lanes["delta"].written_total
        app.settings = GenerationSettings(max_new_tokens=8)
        await say(pilot, "again")
        assert [len(engine.lanes[name].turns) for name in engine.lanes] == [2, 2]
        assert not engine.lanes["frozen"].turns[-1].cancelled

    run(app, scenario)


def test_reset_memory_zeroes_the_meter_and_new_conversation_clears_the_panes() -> None:
    engine = tiny_engine()
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "remember 42")
        assert meter(app).written > 0
        await pilot.press("ctrl+r")
        assert engine.lanes["delta"].written_total == 0 and meter(app).written == 0
        assert len(engine.lanes["delta"].messages) == 2  # the conversation stays
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert all(not replies(pane) for pane in app.panes.values())
        assert all(not lane.messages for lane in engine.lanes.values())

    run(app, scenario)


def test_the_intro_shows_whenever_a_conversation_starts_empty() -> None:
    engine = tiny_engine()
    app = RecordingApp(engine, max_new_tokens=4, intro="facts fall out of a 48-token window")

    async def scenario(pilot: Pilot) -> None:
        await pilot.pause()
        assert all(notes(pane) == ["facts fall out of a 48-token window"] for pane in app.panes.values())
        await say(pilot, "hi")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert all(notes(pane) == ["facts fall out of a 48-token window"] for pane in app.panes.values())

    run(app, scenario)


def test_save_then_load_restores_conversation_and_meter(tmp_path: Path) -> None:
    engine = tiny_engine()
    app = RecordingApp(engine)
    folder = tmp_path / "session"

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "the code is 7")
        saved_written = engine.lanes["delta"].written_total
        saved_replies = {name: replies(pane) for name, pane in app.panes.items()}
        await answer_dialog(pilot, "ctrl+s", str(folder))
        assert (folder / "session.json").exists()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert meter(app).written == 0
        await answer_dialog(pilot, "ctrl+o", str(folder))
        await pilot.pause()
        assert engine.lanes["delta"].written_total == saved_written == meter(app).written
        assert {name: replies(pane) for name, pane in app.panes.items()} == saved_replies
        await answer_dialog(pilot, "ctrl+o", str(tmp_path / "nowhere"))
        assert app.notes[-1][1] == "error" and "no saved session" in app.notes[-1][0]
        assert app.is_running

    run(app, scenario)


def test_policy_switch_and_frozen_toggle() -> None:
    engine = tiny_engine()
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        await answer_dialog(pilot, "ctrl+w", "full")
        assert engine.policy.is_full
        await answer_dialog(pilot, "ctrl+w", "window:lots")
        assert engine.policy.is_full and app.notes[-1][1] == "error"
        await answer_dialog(pilot, "ctrl+w", "window:512")
        assert engine.policy == ContextPolicy(512)
        await pilot.press("ctrl+f")
        assert app.panes["frozen"].has_class("-paused")
        await say(pilot, "only delta")
        assert not engine.lanes["frozen"].messages and len(engine.lanes["delta"].messages) == 2
        assert not replies(app.panes["frozen"]) and replies(app.panes["delta"])
        await pilot.press("ctrl+f")
        assert not app.panes["frozen"].has_class("-paused")

    run(app, scenario)


def test_export_writes_both_lanes(tmp_path: Path) -> None:
    engine = scripted()
    app = RecordingApp(engine)
    target = tmp_path / "out" / "chat.md"

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "hi")
        await answer_dialog(pilot, "ctrl+e", str(target))
        await answer_dialog(pilot, "ctrl+e", str(target / "nested.md"))  # a file where a folder should be
        assert app.notes[-1][1] == "error" and app.is_running
        assert not list(target.parent.glob(".*.tmp"))

    run(app, scenario)
    text = target.read_text(encoding="utf-8")
    assert "## frozen" in text and "## δ-mem" in text and text.count("Hello, Ada.") == 2
    assert "policy: window:1024" in text and "34 tokens written" in text


# -------------------------------------------------------------------------------------- scripted engine
def test_streaming_shows_partial_replies_and_engine_actions_wait() -> None:
    engine = scripted(hold=True)
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press(*"hi", "enter")
        await until(pilot, lambda: engine.holding.is_set() and app.panes["delta"].last_reply == "Hello, Ada.")
        assert app.busy and all(pane.streaming for pane in app.panes.values())
        assert meter(app).estimated and meter(app).written == 4
        assert app.check_action("reset_memory", ()) is None and app.check_action("cancel", ())
        await pilot.press("ctrl+r")  # disabled while the turn runs
        assert not any("Memory reset" in note for note, _ in app.notes)
        engine.release.set()
        await until(pilot, lambda: not app.busy)
        assert meter(app).written == 34 and not meter(app).estimated
        assert app.check_action("cancel", ()) is False

    run(app, scenario)


def test_palette_runs_chat_commands() -> None:
    engine = scripted(written=500)
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"reset memory")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: engine.lanes["delta"].written_total == 0)
        assert meter(app).written == 0

    run(app, scenario)


def test_an_engine_error_is_a_notification_and_the_app_goes_on() -> None:
    engine = scripted(fail=RuntimeError("CUDA out of memory [simulated]"))
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "boom")
        assert app.notes[-1] == ("RuntimeError: CUDA out of memory [simulated]", "error")
        assert all(pane.query(".reply").last().has_class("-failed") for pane in app.panes.values())
        engine.fail = None
        await say(pilot, "again")
        assert app.panes["delta"].last_reply == "Hello, Ada."

    run(app, scenario)


def test_panes_follow_the_stream_only_while_at_the_bottom() -> None:
    engine = scripted(pieces=[f"line {i}\n" for i in range(40)])
    app = RecordingApp(engine)

    async def scenario(pilot: Pilot) -> None:
        pane = app.panes["delta"]
        await say(pilot, "one")
        await pilot.pause(0.1)
        assert pane.max_scroll_y > 0 and pane.scroll_y == pane.max_scroll_y
        pane.scroll_to(y=0, animate=False)  # the reader scrolls up: the pane stops following
        await say(pilot, "two")
        await pilot.pause(0.1)
        assert pane.scroll_y == 0 < pane.max_scroll_y
        pane.scroll_end(animate=False)  # back at the bottom: it follows again
        await pilot.pause(0.1)
        await say(pilot, "three")
        await pilot.pause(0.1)
        assert pane.scroll_y == pane.max_scroll_y

    run(app, scenario)


def test_run_chat_builds_the_engine_and_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tiny_engine()
    loaded = LoadedModel(engine.model, engine.tokenizer, "base/x", "adapter/y", choose_runtime("cpu"))
    started: list[DeltaMemChatApp] = []
    monkeypatch.setattr(DeltaMemChatApp, "run", lambda app: started.append(app))
    assert run_chat(loaded, ContextPolicy(256), GenerationSettings(max_new_tokens=3), batched=False) == 0
    app = started[0]
    assert app.engine.policy == ContextPolicy(256) and not app.engine.batched
    assert app.identity == SessionIdentity("base/x", "adapter/y") and app.settings.max_new_tokens == 3
    assert app.info == {"models": "base/x + adapter/y", "device": "cpu · float32 · sdpa", "policy": "window:256"}
    assert app.intro is None


def test_run_chat_passes_the_intro_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tiny_engine()
    loaded = LoadedModel(engine.model, engine.tokenizer, "toy base", "toy adapter", choose_runtime("cpu"))
    started: list[DeltaMemChatApp] = []
    monkeypatch.setattr(DeltaMemChatApp, "run", lambda app: started.append(app))
    run_chat(loaded, ContextPolicy(48), GenerationSettings(max_new_tokens=3), intro="only δ-mem remembers")
    assert started[0].intro == "only δ-mem remembers"


def test_feed_joins_token_runs_per_lane_in_order() -> None:
    feed = TurnFeed()
    for lane, text in [("frozen", "a"), ("delta", "x"), ("frozen", "b")]:
        feed.put(TokenEvent(lane, text, 0))
    done = LaneDone("frozen", "ab", TurnStats())
    feed.put(done)
    feed.put(TokenEvent("delta", "y", 0))
    assert feed.drain() == [TextDelta("frozen", "ab", 2), TextDelta("delta", "x", 1), done,
                            TextDelta("delta", "y", 1)]
    assert feed.drain() == []


def test_markdown_export_lists_each_lane() -> None:
    messages = ({"role": "user", "content": "q"}, {"role": "assistant", "content": ""})
    lanes = {name: LaneView(name, name != "frozen", messages, 0) for name in LANE_NAMES}
    text = conversation_markdown(lanes, {"delta": "δ-mem"}, {"policy": "full"})
    assert text.index("## frozen") < text.index("## δ-mem") and text.count("*(empty)*") == 2


# -------------------------------------------------------------------------------------- snapshots
def steady_cursor(pilot: Pilot) -> None:
    """Stop the input's cursor blinking (it stays shown), so a screenshot does not depend on when it is taken."""
    pilot.app.query_one(Input).cursor_blink = False


def test_snapshot_mid_stream(snap_compare: Callable[..., bool]) -> None:
    engine = scripted(pieces=("The capital", " of France", " is Paris", "; you told me", " your name is"),
                            hold=True)
    engine.lanes["delta"].written_total = 120
    app = RecordingApp(engine)

    async def run_before(pilot: Pilot) -> None:
        await pilot.press(*"What is my name?", "enter")
        expected = "".join(engine.pieces)
        await until(pilot, lambda: engine.holding.is_set() and all(
            pane.last_reply == expected for pane in app.panes.values()))
        steady_cursor(pilot)
        await pilot.pause(0.1)

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        engine.release.set()


def test_snapshot_budget_warning(snap_compare: Callable[..., bool]) -> None:
    engine = scripted(written=8150, prompt_written=96)
    app = RecordingApp(engine)

    async def run_before(pilot: Pilot) -> None:
        await say(pilot, "Still there?")
        steady_cursor(pilot)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
