"""The chat's session library: autosave after every turn (and after a crash, the last whole turn is there), the
sessions screen (search, reopen with one key, delete after a question), and its snapshot."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Sparkline

from deltamem.runtime.contract import GenerationSettings, SessionIdentity
from deltamem_chat.library import SessionLibrary
from deltamem_chat.library import store as library_store
from deltamem_chat.memory_trace import TracePoint
from deltamem_chat.tui import ChatScreen
from deltamem_chat.tui.screens import ConfirmDialog, SessionsScreen
from deltamem_chat.tui.widgets.memory_panel import HeatStrip, WriteTimeline
from tests.doubles import ScriptedEngine
from tests.test_tui_memory import turn_diagnostics
from tests.tui_harness import SIZE, RecordingApp, press, run, until, view

IDENTITY = SessionIdentity("tiny-random", "random-adapter")


def library_chat(library: SessionLibrary, engine: ScriptedEngine | None = None) -> tuple[RecordingApp, ChatScreen]:
    engine = engine or ScriptedEngine(pieces=("Noted", "."), prompt_written=20)
    chat = ChatScreen(engine, title_info={"models": "tiny"}, identity=IDENTITY,
                      settings=GenerationSettings(max_new_tokens=8), library=library)
    return RecordingApp(chat), chat


async def send(pilot: Pilot, text: str) -> None:
    """A message put on the chat's line at once (typing it key by key is what slows a pilot test) and sent."""
    screen = view(pilot)
    assert isinstance(screen, ChatScreen)
    screen.chat_input.value = text
    await press(pilot, "enter")


def _contents(engine: ScriptedEngine, lane: str = "delta") -> list[str]:
    return [m["content"] for m in engine.lane(lane).messages]


def test_every_turn_is_autosaved_into_one_session(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    app, chat = library_chat(library)

    async def scenario(pilot: Pilot) -> None:
        assert library.search() == []                       # nothing saved before the first turn
        await send(pilot, "my cat is Tom")
        first = chat.session_id
        assert first is not None and [e.messages for e in library.search()] == [2]
        await send(pilot, "my dog is Rex")
        assert chat.session_id == first and [e.messages for e in library.search()] == [4]
        assert [e.title for e in library.search("Rex")] == ["my cat is Tom"]
        await press(pilot, "ctrl+n")
        await send(pilot, "a fresh start")
        assert chat.session_id != first and len(library.search()) == 2

    run(app, scenario)


def test_after_a_crash_the_last_whole_turn_is_there(tmp_path: Path) -> None:
    """The app dies while a third turn streams (and the index goes with it): the library still has two turns."""
    engine = ScriptedEngine(pieces=("Noted", "."), prompt_written=20, hold=True)
    engine.release.set()                                    # the first turns run through
    app, chat = library_chat(SessionLibrary(tmp_path), engine)

    async def scenario(pilot: Pilot) -> None:
        await send(pilot, "the key is under the pot")
        await send(pilot, "the code is 4711")
        engine.release.clear()
        engine.holding.clear()
        chat.chat_input.value = "and then"
        await pilot.press("enter")
        await until(pilot, engine.holding.is_set)           # mid-turn: the app ends here, without a clean quit

    try:
        run(app, scenario)
    finally:
        engine.release.set()
    (tmp_path / "library.sqlite3").unlink()
    library = SessionLibrary(tmp_path)
    [entry] = library.search()
    fresh = ScriptedEngine()
    library.open(entry.session_id, fresh, IDENTITY)
    assert _contents(fresh)[::2] == ["the key is under the pot", "the code is 4711"]
    assert fresh.lane("delta").written_total == 2 * (20 + 2)


def panel_drawn(chat: ChatScreen) -> tuple[list[TracePoint], list[list[float]], str, str]:
    """The memory panel's rows and what it draws of them: the sparklines' data, the heat strip, the timeline."""
    panel = chat.memory_panel
    sparks = [list(line.data or []) for line in panel.query(Sparkline).results(Sparkline)]
    return (list(panel.trace.points), sparks, str(panel.query_one(HeatStrip).render()),
            str(panel.query_one(WriteTimeline).render()))


def test_a_reopened_session_shows_the_memory_panel_it_had(tmp_path: Path) -> None:
    library, folder = SessionLibrary(tmp_path / "library"), tmp_path / "saved"

    def chat_on_library() -> tuple[RecordingApp, ChatScreen]:
        engine = ScriptedEngine(pieces=("Noted", "."), prompt_written=30,
                                diagnostics=[turn_diagnostics(turn) for turn in (1, 2)])
        return library_chat(library, engine)

    app, chat = chat_on_library()
    drawn: list[tuple[list[TracePoint], list[list[float]], str, str]] = []

    async def chatted(pilot: Pilot) -> None:
        await send(pilot, "my cat is Tom")
        await send(pilot, "my dog is Rex")
        await pilot.press("f7")
        await pilot.pause()
        drawn.append(panel_drawn(chat))
        await press(pilot, "ctrl+s")
        chat.app.screen.answer.value = str(folder)  # type: ignore[attr-defined]
        await press(pilot, "enter")

    run(app, chatted)
    points = drawn[0][0]
    assert [p.label for p in points] == ["my cat is Tom", "my dog is Rex"] and points[1].total == 2 * points[0].total
    assert points[0].diagnostics != points[1].diagnostics

    for reopen in ("library", "folder"):
        app, chat = chat_on_library()

        async def reopened(pilot: Pilot, reopen: str = reopen, chat: ChatScreen = chat) -> None:
            assert chat.memory_panel.trace.points == []
            if reopen == "library":
                await pilot.press("ctrl+l")
                await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
                await pilot.press("enter")
            else:
                await pilot.press("ctrl+o")
                await until(pilot, lambda: pilot.app.screen is not chat)
                pilot.app.screen.answer.value = str(folder)  # type: ignore[attr-defined]
                await pilot.press("enter")
            await until(pilot, lambda: pilot.app.screen is chat and bool(chat.memory_panel.trace.points))
            await pilot.press("f7")
            await pilot.pause()
            assert panel_drawn(chat) == drawn[0], f"reopened from the {reopen}"
            assert chat.meter.diagnostics == drawn[0][0][-1].diagnostics      # the meter's line as it was

        run(app, reopened)
        assert not [note for note, severity in app.notes if severity == "error"]


def test_a_session_without_memory_panel_rows_opens_with_an_empty_panel(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    old, broken = ScriptedEngine(pieces=("Noted",), prompt_written=5), ScriptedEngine(pieces=("Hm",))
    list(old.turn("from before the panel was saved"))
    list(broken.turn("a broken panel"))
    library.save(old, IDENTITY)
    library.save(broken, IDENTITY, extra={"memory_panel": [{"label": "x", "written": "many"}]})
    app, chat = library_chat(library)

    async def scenario(pilot: Pilot) -> None:
        for title in ("from before the panel was saved", "a broken panel"):
            await pilot.press("ctrl+l")
            await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
            screen = pilot.app.screen
            assert isinstance(screen, SessionsScreen)
            screen.search.value = title
            await until(pilot, lambda: [e.title for e in screen.entries] == [title])  # noqa: B023
            await pilot.press("enter")
            await until(pilot, lambda: pilot.app.screen is chat)
            assert _contents(chat.engine)[0] == title           # type: ignore[arg-type]
            assert chat.memory_panel.trace.points == []

    run(app, scenario)
    errors = [note for note, severity in app.notes if severity == "error"]
    assert errors == ["the session's memory panel, turn 1: expected label, written, total and diagnostics"]


def test_the_sessions_screen_searches_reopens_and_deletes(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    for words in (("my cat is Tom", "it is grey"), ("I live in Lisbon",), ("call me Bob",)):
        saved = ScriptedEngine(pieces=("Noted",), prompt_written=5)
        for text in words:
            list(saved.turn(text))
        library.save(saved, IDENTITY)
    app, chat = library_chat(library)

    def sessions() -> SessionsScreen:
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        return screen

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
        assert len(sessions().entries) == 3
        sessions().search.value = "grey"                    # message text, not the title
        await until(pilot, lambda: len(sessions().entries) == 1)
        assert [e.title for e in sessions().entries] == ["my cat is Tom"]
        await pilot.press("enter")                          # one key reopens it
        await until(pilot, lambda: pilot.app.screen is chat)
        assert _contents(chat.engine)[::2] == ["my cat is Tom", "it is grey"]   # type: ignore[arg-type]
        assert chat.panes["delta"].query(".user")
        opened = chat.session_id
        await send(pilot, "what colour is my cat?")          # autosaved over the reopened session
        assert [e.messages for e in library.search("colour")] == [6]
        assert library.search("colour")[0].session_id == opened

        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
        await pilot.press("down")                           # into the list; the newest (the open one) first
        await pilot.press("delete")
        assert not isinstance(pilot.app.screen, ConfirmDialog)   # the open conversation is not deleted
        assert any("open conversation" in note for note, _ in app.notes)
        await pilot.press("down", "delete")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("n")                              # asked, and said no: still there
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
        assert len(sessions().entries) == 3
        doomed = sessions().highlighted
        assert doomed is not None
        await pilot.press("delete")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen) and len(sessions().entries) == 2)
        assert doomed.session_id not in {e.session_id for e in library.search()}
        assert not library.folder(doomed.session_id).exists()
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is view(pilot))

    run(app, scenario)


def test_a_session_of_another_model_is_refused_in_one_sentence(tmp_path: Path) -> None:
    library = SessionLibrary(tmp_path)
    other = ScriptedEngine(pieces=("Noted",))
    list(other.turn("made elsewhere"))
    library.save(other, SessionIdentity("another-base", "another-adapter"))
    app, chat = library_chat(library)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
        await pilot.press("enter")
        await until(pilot, lambda: pilot.app.screen is chat)
        assert any(severity == "error" and "another-base" in note for note, severity in app.notes)
        assert chat.engine.lane("delta").messages == () and chat.session_id is None

    run(app, scenario)


def test_snapshot_sessions_screen(snap_compare: Callable[..., bool], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    times = (f"2026-03-0{day}T1{day}:30:00" for day in itertools.count(1))
    monkeypatch.setattr(library_store, "_now", lambda: next(times))
    monkeypatch.chdir(tmp_path)
    library = SessionLibrary(Path("library"))
    for words in (("my cat is Tom", "it is grey"), ("I live in Lisbon", "near the river", "by the bridge"),
                  ("call me Bob",)):
        saved = ScriptedEngine(pieces=("Noted",), prompt_written=17)
        for text in words:
            list(saved.turn(text))
        library.save(saved, IDENTITY)
    app, _ = library_chat(library)

    async def run_before(pilot: Pilot) -> None:
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen))
        await pilot.press("down")
        pilot.app.screen.query_one(DataTable).focus()
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
