"""The screens with retrieval lanes: a pane per lane, what was retrieved under each retrieval lane's reply
(collapsed), and the chat's introduction saying what each pane has."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Collapsible

from deltamem.runtime.contract import LANE_HAS
from deltamem_chat.tui import panes_intro
from tests.test_tui import chat_app, scripted
from tests.tui_harness import (  # noqa: F401 (one_torch_thread: an autouse fixture)
    SIZE,
    one_torch_thread,
    run,
    say,
    steady_cursor,
    texts,
)

THREE = ("frozen", "delta", "rag")
FIRST = "My cat is called Pixel."


def test_three_lanes_show_what_retrieval_put_back() -> None:
    engine = scripted(lanes=THREE)
    app, chat = chat_app(engine, intro=panes_intro(THREE))

    async def scenario(pilot: Pilot) -> None:
        await pilot.pause()
        panes = chat.panes
        assert [pane.border_title for pane in panes.values()] == ["frozen", "δ-mem", "retrieval"]
        assert [pane.has_class("-memory") for pane in panes.values()] == [False, True, False]
        assert LANE_HAS["rag"] in texts(panes["rag"], "note")[0]
        await say(pilot, FIRST)
        assert not panes["rag"].query(Collapsible), "nothing to retrieve yet"
        await say(pilot, "What is my cat called?")
        shown = panes["rag"].query(Collapsible)
        assert len(shown) == 1 and shown.first().title == "retrieved 1 message" and shown.first().collapsed
        assert texts(panes["rag"], "retrieved") == [f"user: {FIRST}"]
        assert not panes["frozen"].query(Collapsible) and not panes["delta"].query(Collapsible)

    run(app, scenario)


def test_snapshot_three_lanes(snap_compare: Callable[..., bool]) -> None:
    app, chat = chat_app(scripted(lanes=THREE), intro=panes_intro(THREE))

    async def run_before(pilot: Pilot) -> None:
        await say(pilot, FIRST)
        await say(pilot, "What is my cat called?")
        chat.panes["rag"].query_one(Collapsible).collapsed = False
        steady_cursor(pilot)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
