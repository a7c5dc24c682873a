"""The chat's tools: copy, history, retry and edit, diff, votes, rebinding, Markdown, small terminals (pilot tests on
the scripted engine, and on the tiny real engine where the memory's exactness is the point)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Footer

from deltamem.runtime.contract import DELTA, FROZEN, GenerationSettings
from deltamem_chat.tui.diff import word_diff
from deltamem_chat.tui.keys import KeymapError, read_keymap
from deltamem_chat.tui.screens import ChoiceDialog, ConfirmDialog
from deltamem_chat.tui.widgets import Reply
from deltamem_chat.votes import VoteError, from_saved
from tests.doubles import ScriptedEngine
from tests.test_tui import chat_app, scripted, tiny_engine
from tests.tui_harness import (  # noqa: F401 (one_torch_thread: an autouse fixture)
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

ANSWERS = {"what is my name?": {FROZEN: "Your name is Bob, I think.", DELTA: "Your name is Ada."}}


def sized_run(app: RecordingApp, scenario: Callable[[Pilot], object], size: tuple[int, int]) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)  # type: ignore[misc]

    asyncio.run(main())


# -------------------------------------------------------------------------------------- retry, on the real engine
def test_regenerate_rolls_the_memory_back_so_written_counts_equal_one_run() -> None:
    single, settings = tiny_engine(), GenerationSettings(max_new_tokens=3)
    for _ in single.turn("my name is Ada", settings):
        pass
    engine = tiny_engine()
    app, chat = chat_app(engine, max_new_tokens=3)

    async def scenario(pilot: Pilot) -> None:
        assert chat.check_action("regenerate", ()) is None  # nothing to retry yet
        await say(pilot, "my name is Ada")
        once = {name: lane.written_total for name, lane in engine.lanes.items()}
        assert once == {name: lane.written_total for name, lane in single.lanes.items()}
        await press(pilot, "ctrl+g")
        assert {name: lane.written_total for name, lane in engine.lanes.items()} == once
        assert chat.meter.written == once[DELTA]
        for name, lane in engine.lanes.items():
            assert lane.messages == single.lanes[name].messages
            assert replies(chat.panes[name]) == [single.lanes[name].messages[-1]["content"]]
        await chat.run_action("regenerate('delta')")
        await until(pilot, lambda: not chat.busy)
        assert engine.lanes[DELTA].written_total == once[DELTA]
        assert engine.lanes[FROZEN].messages == single.lanes[FROZEN].messages  # kept as it was
        assert len(replies(chat.panes[FROZEN])) == len(replies(chat.panes[DELTA])) == 1
        await say(pilot, "what is my name?")  # the memory goes on from exactly one reading of the first turn
        for _ in single.turn("what is my name?", settings):
            pass
        assert engine.lanes[DELTA].written_total == single.lanes[DELTA].written_total

    run(app, scenario)


# -------------------------------------------------------------------------------------- scripted engine
def test_up_and_down_recall_sent_messages_and_enter_keeps_lines() -> None:
    engine = scripted()
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "first")
        await press(pilot, *"second", "ctrl+j", *"line two", "enter")
        assert engine.lanes[DELTA].messages[-2]["content"] == "second\nline two"
        box = chat.chat_input
        await pilot.press("up")
        assert box.value == "second\nline two"
        await pilot.press("up", "up")  # the cursor is on line two: up moves to line one, then recalls
        assert box.value == "first"
        await pilot.press("down")
        assert box.value == "second\nline two"
        box.value = ""
        app.post_message(events.Paste("pasted\nthree\nlines"))  # as a terminal sends it
        await pilot.pause()
        await press(pilot, "enter")
        assert engine.lanes[DELTA].messages[-2]["content"] == "pasted\nthree\nlines"

    run(app, scenario)


def test_edit_last_asks_the_edited_message_in_place_of_the_last() -> None:
    engine = ScriptedEngine(ANSWERS)
    single = ScriptedEngine(ANSWERS)
    for text in ("hello", "what is my name?"):
        for _ in single.turn(text):
            pass
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "hello")
        await say(pilot, "what is my nmae?")
        await pilot.press("ctrl+t")
        assert chat.chat_input.value == "what is my nmae?"
        chat.chat_input.value = "what is my name?"
        await press(pilot, "enter")
        for name, lane in engine.lanes.items():
            assert lane.messages == single.lanes[name].messages
            assert lane.written_total == single.lanes[name].written_total
        assert replies(chat.panes[DELTA]) == ["I do not know.", "Your name is Ada."]

    run(app, scenario)


def test_copy_sends_osc52_with_the_text_and_says_so() -> None:
    engine = ScriptedEngine(ANSWERS)
    app, chat = chat_app(engine)
    written: list[str] = []

    async def scenario(pilot: Pilot) -> None:
        driver = app._driver
        assert driver is not None
        original = driver.write
        driver.write = lambda data: (written.append(data), original(data))[1]  # type: ignore[method-assign]
        await say(pilot, "what is my name?")
        await pilot.press("f2")
        assert f"\x1b]52;c;{base64.b64encode(b'Your name is Ada.').decode()}\a" in written
        assert app.notes[-1] == ("Copied the δ-mem reply (17 characters).", "information")
        chat.panes[FROZEN].focus()
        await pilot.press("f2")
        assert app.clipboard == "Your name is Bob, I think."
        await pilot.press("f3")
        assert "Your name is Bob, I think." in app.clipboard and "Your name is Ada." in app.clipboard
        await pilot.press("f4")
        assert app.clipboard.startswith("# deltamem-chat conversation") and "what is my name?" in app.clipboard

    run(app, scenario)


def test_diff_marks_the_words_one_lane_said_and_the_other_did_not() -> None:
    assert word_diff("a b c", "a x c") == ([(2, 3)], [(2, 3)])
    assert word_diff("that sounds lovely.", "That.") == ([(5, 11), (12, 19)], [])   # punctuation and case aside
    engine = ScriptedEngine(ANSWERS)
    app, chat = chat_app(engine)

    def marked(lane: str) -> list[str]:
        reply = chat.panes[lane].query(Reply).last()
        return [reply.text[start:end] for start, end in reply.marks or ()]

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "what is my name?")
        await pilot.press("f5")
        assert marked(DELTA) == ["Ada."]
        assert marked(FROZEN) == ["Bob,", "I", "think."]
        assert chat.panes[DELTA].query(Reply).last().plain.display
        await pilot.press("f5")
        assert chat.panes[DELTA].query(Reply).last().marks is None

    run(app, scenario)


def test_votes_are_tallied_saved_loaded_and_exported(tmp_path: Path) -> None:
    engine = ScriptedEngine(ANSWERS)
    app, chat = chat_app(engine)
    folder, export = tmp_path / "session", tmp_path / "chat.md"

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "what is my name?")
        await pilot.press("f8")
        await until(pilot, lambda: isinstance(app.screen, ChoiceDialog))
        await pilot.press("2")
        await pilot.pause()
        assert chat.votes.cast == {1: DELTA} and chat.status.note == "votes: frozen 0 · δ-mem 1 · tie 0 · both wrong 0"
        lanes_line = str(chat.status.render()).splitlines()[1]
        assert len(lanes_line) <= chat.status.content_region.width, "the tally fits beside the speeds at 120 columns"
        for pane in chat.panes.values():                      # on the turn, under its stats
            assert texts(pane, "vote") == ["vote: δ-mem better"]
            assert pane.children[-1].has_class("vote") and pane.children[-2].has_class("meta")
        await answer_dialog(pilot, "ctrl+s", str(folder))
        assert json.loads((folder / "session.json").read_text())["extra"]["votes"] == {"1": DELTA}
        await answer_dialog(pilot, "ctrl+e", str(export))
        await pilot.press("ctrl+n")  # saved: no question
        await pilot.pause()
        assert chat.votes.cast == {} and chat.status.note == ""
        await answer_dialog(pilot, "ctrl+o", str(folder))
        await pilot.pause()
        assert chat.votes.cast == {1: DELTA}
        assert all(texts(pane, "vote") == ["vote: δ-mem better"] for pane in chat.panes.values())
        await pilot.press("ctrl+e")
        chat.app.screen.answer.value = str(export)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))  # it exists: asked before replacing
        await pilot.press("n")

    run(app, scenario)
    assert "## Votes\n\n- turn 1: δ-mem better" in export.read_text(encoding="utf-8")
    with pytest.raises(VoteError, match="turn 1: 'maybe'"):
        from_saved({"1": "maybe"}, {DELTA: "δ-mem better"})


def test_a_load_that_changes_the_policy_says_so_and_the_placeholder_follows_the_lanes(tmp_path: Path) -> None:
    engine = scripted()
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        assert str(chat.chat_input.placeholder).startswith("Message both lanes")
        await pilot.press("ctrl+f")
        assert str(chat.chat_input.placeholder).startswith("Message δ-mem alone (frozen paused)")
        await say(pilot, "hi")
        await answer_dialog(pilot, "ctrl+w", "full")
        await answer_dialog(pilot, "ctrl+s", str(tmp_path / "s"))
        await answer_dialog(pilot, "ctrl+w", "window:64")
        await answer_dialog(pilot, "ctrl+o", str(tmp_path / "s"))
        assert any("context policy full replaces window:64" in note for note, _ in app.notes)

    run(app, scenario)


def test_keys_are_rebound_from_the_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": {"copy_reply": "f12", "diff": "ctrl+b"}}), encoding="utf-8")
    engine = ScriptedEngine(ANSWERS)
    chat = chat_app(engine)[1]
    app = RecordingApp(chat, keys=keys)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "what is my name?")
        await pilot.press("f2")
        assert app.clipboard == ""
        await pilot.press("f12")
        assert app.clipboard == "Your name is Ada."
        await pilot.press("ctrl+b")
        assert chat.diff_on
        shown = " ".join(str(key.render()) for key in app.screen.query_one(Footer).query("FooterKey"))
        assert "f12" in shown and "f2" not in shown.split()

    run(app, scenario)
    keys.write_text(json.dumps({"keys": {"copy": "f12"}}), encoding="utf-8")
    with pytest.raises(KeymapError, match=r"keys.json: keys.copy is not a binding id \(one of copy_reply"):
        read_keymap(keys, ["copy_reply", "diff"])
    assert read_keymap(tmp_path / "none.json", ["diff"]) == {}


@pytest.mark.parametrize("size", [(80, 24), (60, 20), (40, 12)])
def test_small_terminals_keep_every_pane_rows_and_the_footer_its_keys(size: tuple[int, int]) -> None:
    engine = scripted()
    app, chat = chat_app(engine)

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "hi")
        regions = [pane.region for pane in chat.panes.values()]
        assert all(region.height >= 3 for region in regions)
        widgets = [chat.status, *chat.panes.values(), chat.meter, chat.chat_input, chat.query_one(Footer)]
        rows = sorted({(w.region.y, w.region.bottom) for w in widgets if w not in chat.panes.values()}
                      | {(regions[0].y, regions[0].bottom)})
        assert all(a[1] <= b[0] for a, b in zip(rows, rows[1:])), f"overlap: {rows}"
        shown = " ".join(str(key.render()) for key in chat.query_one(Footer).query("FooterKey")
                         if key.region.right <= size[0] - 10)
        for key in (["^q", "^n", "^s", "^o"] + (["^f"] if size[0] >= 60 else [])):
            assert key in shown, f"{key} not visible in the footer at {size}"

    sized_run(app, scenario, size)


def footer_keys_cut(screen: Screen[Any]) -> list[str]:
    """The footer's keys that are not shown whole: cut by its edge, or under the palette key."""
    footer = screen.query_one(Footer)
    keys = list(footer.query("FooterKey"))
    palette = next((key for key in keys if key.has_class("-command-palette")), None)
    if palette is None:
        return ["the palette key (the footer is not composed yet)"]
    cut = []
    for key in keys:
        region, text = key.region, key.render()
        inside = region.width >= text.cell_len and footer.region.contains_region(region)
        clear = key is palette or region.right <= palette.region.x or region.y != palette.region.y
        if not (inside and clear):
            cut.append(str(text).strip())
    return cut


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
def test_every_footer_key_is_shown_whole_on_a_small_terminal(size: tuple[int, int]) -> None:
    engine = scripted(hold=True)
    app, chat = chat_app(engine)
    shown_keys = {binding.action for binding in chat.BINDINGS if binding.show}

    def shown() -> set[str]:
        return {key.action for key in chat.query_one(Footer).query("FooterKey")}  # type: ignore[attr-defined]

    def whole(keys: set[str]) -> bool:
        return shown() >= keys and footer_keys_cut(chat) == []

    async def scenario(pilot: Pilot) -> None:
        # Each wait fails after 5 s if a key stays cut (the footer is laid out again after each change of keys).
        await until(pilot, lambda: whole(shown_keys - {"cancel"}), timeout=5)
        chat.chat_input.value = "hi"
        await pilot.press("enter")
        await until(pilot, lambda: engine.holding.is_set())
        await until(pilot, lambda: whole(shown_keys), timeout=5)      # busy: the stop key too, the others dimmed
        engine.release.set()
        await until(pilot, lambda: not chat.busy)
        await until(pilot, lambda: whole(shown_keys - {"cancel"}), timeout=5)

    sized_run(app, scenario, size)


def test_a_wide_footer_keeps_one_row() -> None:
    app, chat = chat_app(scripted())

    async def scenario(pilot: Pilot) -> None:
        footer = chat.query_one(Footer)
        idle = {binding.action for binding in chat.BINDINGS if binding.show} - {"cancel"}
        await until(pilot, lambda: bool(footer.query(".-command-palette"))
                    and {key.action for key in footer.query("FooterKey")} >= idle)  # type: ignore[attr-defined]
        # Composed; once laid out it is one row with nothing cut (two rows would time this out).
        await until(pilot, lambda: footer.region.height == 1 and footer_keys_cut(chat) == [], timeout=10)

    sized_run(app, scenario, (120, 40))


# -------------------------------------------------------------------------------------- snapshots
MARKDOWN = ("Here is **the fix**:\n\n", "```python\n", "def greet(name: str) -> str:\n",
            "    return f\"hello {name}\"\n", "```\n\n", "- first point\n", "- second")


def test_snapshot_markdown_mid_stream(snap_compare: Callable[..., bool]) -> None:
    engine = ScriptedEngine(pieces=MARKDOWN, prompt_written=20, hold=True)
    app, chat = chat_app(engine)

    async def run_before(pilot: Pilot) -> None:
        await pilot.press(*"fix it", "enter")
        await until(pilot, lambda: engine.holding.is_set() and all(
            pane.last_reply == "".join(MARKDOWN) for pane in chat.panes.values()))
        steady_cursor(pilot)
        await pilot.pause(0.2)

    try:
        assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
    finally:
        engine.release.set()


def test_snapshot_diff_view(snap_compare: Callable[..., bool]) -> None:
    app, _ = chat_app(ScriptedEngine(ANSWERS))

    async def run_before(pilot: Pilot) -> None:
        await say(pilot, "what is my name?")
        await pilot.press("f5")
        pilot.app.clear_notifications()  # the marks, not the notice
        steady_cursor(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_snapshot_chat_at_80x24(snap_compare: Callable[..., bool]) -> None:
    app, _ = chat_app(ScriptedEngine(ANSWERS))

    async def run_before(pilot: Pilot) -> None:
        await say(pilot, "what is my name?")
        steady_cursor(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
