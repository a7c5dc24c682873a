"""The chat screen: pilot tests on the tiny offline engine, and snapshots of a scripted (deterministic) engine; the
frame it shares with the replay (a pane per engine lane, the feed)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot

from deltamem import DeltaMemConfig, DeltaMemModel, OffTrainedDefaultsWarning
from deltamem.context import ContextPolicy
from deltamem.runtime.contract import (
    DELTA,
    LANE_NAMES,
    Event,
    GenerationSettings,
    LaneDone,
    LaneView,
    ReadProgress,
    SessionIdentity,
    TokenEvent,
    TurnStats,
)
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel, choose_runtime
from deltamem.testing import byte_chatml_tokenizer, random_backbone, randomize_adapter
from deltamem_chat.tui import ChatScreen, DeltaMemApp, Job, LanesScreen, LoadingScreen, panes_intro, run_chat
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.feed import Feed
from deltamem_chat.tui.messages import JobEnded, TextDelta
from deltamem_chat.tui.screens import ConfirmDialog
from tests.doubles import ScriptedEngine
from tests.tui_harness import (  # noqa: F401 (one_torch_thread: an autouse fixture)
    SIZE,
    RecordingApp,
    answer_dialog,
    one_torch_thread,
    press,
    replies,
    run,
    say,
    steady_cursor,
    texts,
    until,
)

INFO = {"models": "tiny random + random adapter", "device": "cpu · float32 · sdpa"}
IDENTITY = SessionIdentity("tiny-random", "random-adapter")


def tiny_engine(cls: type[ABEngine] = ABEngine) -> ABEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        model = DeltaMemModel(random_backbone("tiny", attn="sdpa"),
                              DeltaMemConfig(output_init="base_slice_fixed", delta_heads=("q", "o")))
    randomize_adapter(model, seed=1)
    return cls(model, byte_chatml_tokenizer(), policy=ContextPolicy.parse("window:1024"))


class SlowEngine(ABEngine):
    """The real engine, a few milliseconds per token, so a test can press Escape well before the reply ends."""

    def turn(self, *args: Any, **kwargs: Any) -> Iterator[Event]:
        for event in super().turn(*args, **kwargs):
            if isinstance(event, TokenEvent):
                time.sleep(0.01)
            yield event


#: What the scripted engine's lanes say, piece by piece, unless a test chooses.
HELLO = ("Hello", ",", " Ada", ".")


def scripted(pieces: Sequence[str] = HELLO, *, prompt_written: int = 30, **kwargs: Any) -> ScriptedEngine:
    """The engine double for the chat: every lane streams `pieces`; a memory lane writes the prompt, then a piece a
    token."""
    return ScriptedEngine(pieces=pieces, prompt_written=prompt_written, **kwargs)


def chat_app(engine: Any, max_new_tokens: int = 24, intro: str | None = None) -> tuple[RecordingApp, ChatScreen]:
    """The app on a chat screen over `engine`, and the screen."""
    chat = ChatScreen(engine, title_info=INFO, identity=IDENTITY,
                      settings=GenerationSettings(max_new_tokens=max_new_tokens), intro=intro)
    return RecordingApp(chat), chat


# -------------------------------------------------------------------------------------- tiny engine
def test_a_message_streams_into_both_panes_and_the_meter_ends_exact() -> None:
    engine = tiny_engine()
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "my name is Ada")
        for name, pane in chat.panes.items():
            lane = engine.lanes[name]
            assert [m["role"] for m in lane.messages] == ["user", "assistant"]
            assert pane.last_reply == lane.messages[-1]["content"]
            assert not pane.streaming
        written = engine.lanes["delta"].written_total
        assert written > 0 and chat.meter.written == written and not chat.meter.estimated
        assert chat.meter.increment == written and chat.meter.status == "ok"
        assert {"beta_mean", "delta_o_ratio", "state_norm", "state_norm.0"} <= set(chat.meter.diagnostics)
        await say(pilot, "what is my name?")
        assert chat.meter.written == engine.lanes["delta"].written_total > written
        assert chat.meter.increment == engine.lanes["delta"].written_total - written
        assert chat.chat_input.sent == ["my name is Ada", "what is my name?"]

    run(app, scenario)


def test_escape_cancels_and_the_lanes_stay_usable() -> None:
    engine = tiny_engine(SlowEngine)
    app, chat = chat_app(engine, max_new_tokens=400)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press(*"tell me everything", "enter")
        await until(pilot, lambda: bool(chat.panes["frozen"].last_reply))
        await pilot.press("escape")
        await until(pilot, lambda: not chat.busy)
        last = {name: engine.lanes[name].turns[-1] for name in engine.lanes}
        assert any(stats.cancelled for stats in last.values())
        for name, stats in last.items():
            assert stats.tokens < 400
            reply = chat.panes[name].query(".reply").last()
            assert reply.has_class("-cancelled") == stats.cancelled
            assert reply.text == engine.lanes[name].messages[-1]["content"]  # the partial reply stays
        assert chat.meter.written == engine.lanes["delta"].written_total
        chat.settings = GenerationSettings(max_new_tokens=8)
        await say(pilot, "again")
        assert [len(engine.lanes[name].turns) for name in engine.lanes] == [2, 2]
        assert not engine.lanes["frozen"].turns[-1].cancelled

    run(app, scenario)


def test_reset_memory_zeroes_the_meter_and_new_conversation_clears_the_panes() -> None:
    engine = tiny_engine()
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "remember 42")
        assert chat.meter.written > 0
        await pilot.press("ctrl+r")
        assert engine.lanes["delta"].written_total == 0 and chat.meter.written == 0
        assert len(engine.lanes["delta"].messages) == 2  # the conversation stays
        await pilot.press("ctrl+n")  # unsaved: asked first, and "n" keeps it
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await pilot.pause()
        assert len(engine.lanes["delta"].messages) == 2 and replies(chat.panes["delta"])
        await pilot.press("ctrl+n", "y")
        await pilot.pause()
        assert all(not replies(pane) for pane in chat.panes.values())
        assert all(not lane.messages for lane in engine.lanes.values())

    run(app, scenario)


def test_the_intro_shows_whenever_a_conversation_starts_empty() -> None:
    engine = tiny_engine()
    app, chat = chat_app(engine, max_new_tokens=4, intro="facts fall out of a 48-token window")

    async def scenario(pilot: Pilot) -> None:
        await pilot.pause()
        assert all(texts(pane, "note") == ["facts fall out of a 48-token window"] for pane in chat.panes.values())
        await say(pilot, "hi")
        await pilot.press("ctrl+n", "y")
        await pilot.pause()
        assert all(texts(pane, "note") == ["facts fall out of a 48-token window"] for pane in chat.panes.values())

    run(app, scenario)


def test_save_then_load_restores_conversation_and_meter(tmp_path: Path) -> None:
    engine = tiny_engine()
    app, chat = chat_app(engine)
    folder = tmp_path / "session"

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "the code is 7")
        saved_written = engine.lanes["delta"].written_total
        saved_replies = {name: replies(pane) for name, pane in chat.panes.items()}
        await answer_dialog(pilot, "ctrl+s", str(folder))
        assert (folder / "session.json").exists()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert chat.meter.written == 0
        await answer_dialog(pilot, "ctrl+o", str(folder))
        await pilot.pause()
        assert engine.lanes["delta"].written_total == saved_written == chat.meter.written
        assert {name: replies(pane) for name, pane in chat.panes.items()} == saved_replies
        await answer_dialog(pilot, "ctrl+o", str(tmp_path / "nowhere"))
        assert app.notes[-1][1] == "error" and "no saved session" in app.notes[-1][0]
        assert app.is_running

    run(app, scenario)


def test_policy_switch_and_frozen_toggle() -> None:
    engine = tiny_engine()
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await answer_dialog(pilot, "ctrl+w", "full")
        assert engine.policy.is_full
        await answer_dialog(pilot, "ctrl+w", "window:lots")
        assert engine.policy.is_full and app.notes[-1][1] == "error"
        await answer_dialog(pilot, "ctrl+w", "window:512")
        assert engine.policy == ContextPolicy(512)
        await pilot.press("ctrl+f")
        assert chat.panes["frozen"].has_class("-paused")
        await say(pilot, "only delta")
        assert not engine.lanes["frozen"].messages and len(engine.lanes["delta"].messages) == 2
        assert not replies(chat.panes["frozen"]) and replies(chat.panes["delta"])
        await pilot.press("ctrl+f")
        assert not chat.panes["frozen"].has_class("-paused")

    run(app, scenario)


def test_export_writes_both_lanes(tmp_path: Path) -> None:
    engine = scripted()
    app, chat = chat_app(engine)
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
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press(*"hi", "enter")
        await until(pilot, lambda: engine.holding.is_set() and chat.panes["delta"].last_reply == "Hello, Ada.")
        assert chat.busy and all(pane.streaming for pane in chat.panes.values())
        assert chat.meter.estimated and chat.meter.written == 4
        assert chat.check_action("reset_memory", ()) is None and chat.check_action("cancel", ())
        await pilot.press("ctrl+r")  # disabled while the turn runs
        assert not any("Memory reset" in note for note, _ in app.notes)
        engine.release.set()
        await until(pilot, lambda: not chat.busy)
        assert chat.meter.written == 34 and not chat.meter.estimated
        assert chat.check_action("cancel", ()) is False

    run(app, scenario)


def test_palette_runs_chat_commands() -> None:
    engine = scripted(written=500)
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"reset memory")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: engine.lanes["delta"].written_total == 0)
        assert chat.meter.written == 0

    run(app, scenario)


def test_an_engine_error_is_a_notification_and_the_app_goes_on() -> None:
    engine = scripted(fail=RuntimeError("CUDA out of memory [simulated]"))
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "boom")
        assert app.notes[-1] == ("CUDA out of memory [simulated]", "error")
        assert all(pane.query(".reply").last().has_class("-failed") for pane in chat.panes.values())
        engine.fail = None
        await say(pilot, "again")
        assert chat.panes["delta"].last_reply == "Hello, Ada."

    run(app, scenario)


def test_panes_follow_the_stream_only_while_at_the_bottom() -> None:
    engine = scripted(pieces=[f"line {i}\n\n" for i in range(24)])  # paragraphs: Markdown joins lines
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        pane = chat.panes["delta"]
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


def _opened_chat(monkeypatch: pytest.MonkeyPatch, loaded: LoadedModel, **options: Any) -> tuple[DeltaMemApp, Any]:
    """The app `run_chat` starts (not run) and the view its loading screen makes once `loaded` is loaded."""
    started: list[DeltaMemApp] = []
    monkeypatch.setattr(DeltaMemApp, "run", lambda app: started.append(app))
    assert run_chat(lambda progress: loaded, **options) == 0
    loading = started[0].first
    assert isinstance(loading, LoadingScreen) and started[0].main is None, "the app opens before the model loads"
    return started[0], loading.prepare(lambda step: None).view()


def test_run_chat_builds_the_engine_and_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tiny_engine()
    loaded = LoadedModel(engine.model, engine.tokenizer, "base/x", "adapter/y", choose_runtime("cpu"))
    app, chat = _opened_chat(monkeypatch, loaded, policy=ContextPolicy(256),
                             settings=GenerationSettings(max_new_tokens=3), batched=False)
    assert isinstance(chat, ChatScreen) and app.title == "deltamem-chat"
    assert chat.engine.policy == ContextPolicy(256) and not chat.engine.batched
    assert chat.identity == SessionIdentity("base/x", "adapter/y") and chat.settings.max_new_tokens == 3
    assert chat.info == {"models": "base/x + adapter/y", "device": "cpu · float32 · sdpa", "policy": "window:256"}
    assert chat.intro == panes_intro(LANE_NAMES), "the introduction says what each pane has"


def test_run_chat_passes_the_intro_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tiny_engine()
    loaded = LoadedModel(engine.model, engine.tokenizer, "toy base", "toy adapter", choose_runtime("cpu"))
    _, chat = _opened_chat(monkeypatch, loaded, policy=ContextPolicy(48),
                           settings=GenerationSettings(max_new_tokens=3), intro="only δ-mem remembers")
    assert isinstance(chat, ChatScreen)
    assert chat.intro == panes_intro(LANE_NAMES) + "\n\nonly δ-mem remembers"


def test_feed_joins_token_runs_per_lane_in_order() -> None:
    feed = Feed()
    for lane, text in [("frozen", "a"), ("delta", "x"), ("frozen", "b")]:
        feed.put(TokenEvent(lane, text, 0))
    done = LaneDone("frozen", "ab", TurnStats())
    feed.put(done)
    feed.put(TokenEvent("delta", "y", 0))
    feed.put(JobEnded())
    assert feed.drain() == [TextDelta("frozen", "ab", 2), TextDelta("delta", "x", 1), done,
                            TextDelta("delta", "y", 1), JobEnded()]
    assert feed.drain() == []


def test_quitting_mid_turn_stops_the_turn() -> None:
    engine = scripted(hold=True)
    app, _ = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press(*"hi", "enter")
        await until(pilot, engine.holding.is_set)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running)

    run(app, scenario)
    cancel = engine.cancels[-1]
    assert cancel is not None and cancel.is_set()


# -------------------------------------------------------------------------------------- the frame
THREE_LANES = ("frozen", "delta", "delta-b")


def test_the_chat_shows_a_pane_per_engine_lane() -> None:
    engine = scripted(lanes=THREE_LANES)
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await pilot.pause()
        panes = chat.panes
        assert list(panes) == list(THREE_LANES) == list(chat.status.titles)
        assert [pane.border_title for pane in panes.values()] == ["frozen", "δ-mem", "delta-b"]
        assert [pane.has_class("-memory") for pane in panes.values()] == [False, True, True]
        await say(pilot, "hi")
        assert all(pane.last_reply == "Hello, Ada." for pane in panes.values())
        assert all(chat.status.stats[name] is not None for name in THREE_LANES)
        assert chat.meter.written == engine.lanes["delta"].written_total == 34
        await pilot.press("ctrl+r")
        assert texts(panes["delta-b"], "note") == ["memory reset: delta-b continues from an empty state"]

    run(app, scenario)


class BareView(LanesScreen[Job]):
    """A view with nothing of its own: the frame alone, driven by the test."""


def test_a_view_is_the_frame_plus_what_it_runs() -> None:
    engine = scripted(lanes=THREE_LANES, hold=True)
    bare = BareView(engine, {"models": "scripted"})
    app = RecordingApp(bare)

    def body(job: Job) -> None:
        for event in engine.turn("hi", cancel=job.cancel):
            bare.feed.put(event)

    async def scenario(pilot: Pilot) -> None:
        await pilot.pause()
        assert len(bare.panes) == 3 and bare.status.info == {"models": "scripted"}
        for pane in bare.panes.values():
            pane.start_reply()
        bare.start(Job(bare.written), body)
        assert bare.check_action("cancel", ()) is True
        await until(pilot, lambda: engine.holding.is_set() and bare.panes["delta-b"].last_reply == "Hello, Ada.")
        assert bare.meter.estimated and bare.meter.written == 4
        engine.release.set()
        await until(pilot, lambda: not bare.busy)
        assert bare.meter.written == 34 and bare.meter.diagnostics["beta_mean"] == 0.42
        assert all(chat_stats is not None for chat_stats in bare.status.stats.values())

    run(app, scenario)


def test_markdown_export_lists_each_lane() -> None:
    messages = ({"role": "user", "content": "q"}, {"role": "assistant", "content": ""})
    lanes = {name: LaneView(name, name != "frozen", messages, 0) for name in LANE_NAMES}
    text = conversation_markdown(lanes, {"delta": "δ-mem"}, {"policy": "full"})
    assert text.index("## frozen") < text.index("## δ-mem") and text.count("*(empty)*") == 2


# -------------------------------------------------------------------------------------- snapshots
def test_snapshot_mid_stream(snap_compare: Callable[..., bool]) -> None:
    engine = scripted(("The capital", " of France", " is Paris", "; you told me", " your name is"), hold=True)
    engine.lanes["delta"].written_total = 120
    app, chat = chat_app(engine)

    async def run_before(pilot: Pilot) -> None:
        await pilot.press(*"What is my name?", "enter")
        expected = "".join(engine.pieces or ())
        await until(pilot, lambda: engine.holding.is_set() and all(
            pane.last_reply == expected for pane in chat.panes.values()))
        steady_cursor(pilot)
        await pilot.pause(0.1)

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        engine.release.set()


def test_snapshot_budget_warning(snap_compare: Callable[..., bool]) -> None:
    engine = scripted(written=8150, prompt_written=96)
    app, _ = chat_app(engine)

    async def run_before(pilot: Pilot) -> None:
        await say(pilot, "Still there?")
        steady_cursor(pilot)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_document_read_into_memory_moves_the_meter_and_says_how_much_was_read(tmp_path: Path) -> None:
    engine = tiny_engine()
    engine.set_policy(ContextPolicy(256))
    document = tmp_path / "notes.md"
    document.write_text("The spare key is under the blue pot. " * 30, encoding="utf-8")  # over four windows
    app, chat = chat_app(engine)
    seen: list[str] = []

    async def scenario(pilot: Pilot) -> None:
        original = chat.status.set_info

        def record(key: str, value: str) -> None:
            if key == "reading":
                seen.append(value)
            original(key, value)

        chat.status.set_info = record
        await answer_dialog(pilot, "ctrl+d", str(document))
        await until(pilot, lambda: not chat.busy)
        delta = engine.lanes[DELTA]
        total = len(engine.renderer.ids([delta.messages[-1]]))
        assert delta.written_total == total and chat.meter.written == total and not chat.meter.estimated
        assert seen and seen[-1] == f"{total:,} / {total:,} tokens into memory", "progress shown as it went"
        assert "reading" not in chat.status.info
        notes = [str(n.render()) for n in chat.panes[DELTA].query(".note")]
        assert f"document notes.md · 1,110 characters · {total:,} of {total:,} tokens read into memory" in notes
        assert [m["role"] for m in delta.messages] == ["user"], "a document gets no reply"
        assert delta.messages[0]["content"].startswith("Document: notes.md\n\n")
        await press(pilot, "ctrl+d")
        await pilot.press("escape")
        app.main._read(str(tmp_path / "missing.md"))
        assert any("missing.md: no such file" in note for note, _ in app.notes)

    run(app, scenario)


def test_a_long_reads_time_left_follows_its_rate_and_each_read_starts_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltamem_chat.tui import frame

    clock = iter([100.0, 110.0, 120.0, 130.0, 200.0, 201.0])
    monkeypatch.setattr(frame.time, "monotonic", lambda: next(clock))
    job = Job(0)
    assert job.read_left(ReadProgress(DELTA, 100, 1000)) == ""          # no rate yet
    assert job.read_left(ReadProgress(DELTA, 200, 1000)) == " · 1:20 left"  # 100 tokens in 10 s, 800 to go
    assert job.read_left(ReadProgress(DELTA, 300, 1000)) == " · 1:10 left"
    assert job.read_left(ReadProgress(DELTA, 1000, 1000)) == ""
    assert job.read_left(ReadProgress(DELTA, 50, 500)) == ""            # the next message's read
    assert job.read_left(ReadProgress(DELTA, 100, 500)) == " · 0:08 left"
