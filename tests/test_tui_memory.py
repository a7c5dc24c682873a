"""The memory panel: fed by the engine's per-turn diagnostics, toggled with a key, in the chat and the replay."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Sparkline

from deltamem.runtime.contract import GenerationSettings, SessionIdentity
from deltamem_chat.memory_trace import MemoryTrace, grouped
from deltamem_chat.tui import ChatScreen
from deltamem_chat.tui.widgets.memory_panel import HeatStrip, MemoryPanel, WriteTimeline
from tests.doubles import ScriptedEngine
from tests.tui_harness import SIZE, RecordingApp, press, run, steady_cursor, until, view

IDENTITY = SessionIdentity("tiny-random", "random-adapter")


def turn_diagnostics(turn: int, layers: int = 4) -> dict[str, float]:
    """What a memory lane reports after turn `turn`: norms growing with the turn, deeper layers faster."""
    norms = {f"state_norm.{layer}": round(0.2 * turn * (layer + 1), 3) for layer in range(layers)}
    return {"beta_mean": 0.3 + 0.05 * (turn % 3), "delta_o_ratio": 0.01 * turn,
            "state_norm": sum(norms.values()) / layers, **norms}


MESSAGES = ("my name is Ada", "I live in Lisbon", "my cat is Tom", "what is my name?", "where do I live?")


def memory_chat(written: int = 0) -> tuple[RecordingApp, ChatScreen, ScriptedEngine]:
    engine = ScriptedEngine(pieces=("Noted", "."), prompt_written=40, written=written,
                            diagnostics=[turn_diagnostics(turn) for turn in range(1, 9)])
    chat = ChatScreen(engine, title_info={"models": "tiny"}, identity=IDENTITY,
                      settings=GenerationSettings(max_new_tokens=8))
    return RecordingApp(chat), chat, engine


async def send(pilot: Pilot, text: str) -> None:
    screen = view(pilot)
    assert isinstance(screen, ChatScreen)
    screen.chat_input.value = text
    await press(pilot, "enter")


def test_the_panel_shows_what_the_engine_reported_turn_by_turn() -> None:
    app, chat, engine = memory_chat()

    async def scenario(pilot: Pilot) -> None:
        panel = chat.query_one(MemoryPanel)
        assert not panel.shown and not panel.display
        for text in MESSAGES[:3]:
            await send(pilot, text)                          # fed while hidden
        await pilot.press("f7")
        await pilot.pause()
        assert panel.shown and panel.display and panel.region.height > 0
        trace = panel.trace
        assert [p.label for p in trace.points] == list(MESSAGES[:3])
        assert [p.written for p in trace.points] == [42, 42, 42]
        assert [p.total for p in trace.points] == [42, 84, 126] and engine.lane("delta").written_total == 126
        assert trace.layer_norms()[3] == [turn_diagnostics(t)["state_norm.3"] for t in (1, 2, 3)]
        beta, delta_o = panel.query(Sparkline).results(Sparkline)
        assert list(beta.data or []) == [turn_diagnostics(t)["beta_mean"] for t in (1, 2, 3)]
        assert list(delta_o.data or []) == [turn_diagnostics(t)["delta_o_ratio"] for t in (1, 2, 3)]
        strip = str(panel.query_one(HeatStrip).render())
        assert [line.split()[0] for line in strip.splitlines()] == ["L0", "L1", "L2", "L3"]
        assert strip.splitlines()[3].rstrip().endswith(f"{turn_diagnostics(3)['state_norm.3']:.3f}")
        timeline = str(panel.query_one(WriteTimeline).render())
        assert "8,192 trained horizon" in timeline and "126 written" in timeline
        assert "+42 my cat is Tom" in timeline
        await press(pilot, "ctrl+n")                         # a new conversation starts a new trace
        await press(pilot, "y")                              # (dropping the unsaved one)
        assert panel.trace.points == []
        await pilot.press("f7")
        await pilot.pause()
        assert not panel.shown and not panel.display

    run(app, scenario)


def test_a_turn_asked_again_replaces_its_point_in_the_panel() -> None:
    app, chat, _ = memory_chat()

    async def scenario(pilot: Pilot) -> None:
        for text in MESSAGES[:2]:
            await send(pilot, text)
        await press(pilot, "ctrl+g")                          # retried: the same turn, not one more
        trace = chat.memory_panel.trace
        assert [p.label for p in trace.points] == list(MESSAGES[:2]) and trace.points[-1].total == 84
        await pilot.press("ctrl+t")
        await send(pilot, MESSAGES[2])                        # edited: in place of the last one
        assert [p.label for p in trace.points] == [MESSAGES[0], MESSAGES[2]]
        assert [p.total for p in trace.points] == [42, 84]

    run(app, scenario)


def test_the_trace_knows_where_the_horizon_falls() -> None:
    trace = MemoryTrace(horizon=100)
    for total in (40, 90, 130, 170):
        trace.add(f"to {total}", 40, total, {"state_norm.0": 1.0})
    assert trace.horizon_turn == 2 and trace.layers == 1
    assert MemoryTrace(horizon=100).horizon_turn is None


def test_deep_models_share_heat_rows() -> None:
    rows = [[float(layer)] * 2 for layer in range(36)]
    shown = grouped(rows, 8)
    assert [name for name, _ in shown] == ["L0-3", "L4-8", "L9-13", "L14-17", "L18-21", "L22-26", "L27-31",
                                           "L32-35"]                 # 4.5 layers a row, bounds rounded half-even
    assert shown[0][1] == [1.5, 1.5]                       # the mean of layers 0..3
    assert grouped(rows[:3], 8) == [("L0", [0.0, 0.0]), ("L1", [1.0, 1.0]), ("L2", [2.0, 2.0])]


def test_snapshot_memory_panel(snap_compare: Callable[..., bool]) -> None:
    app, chat, _ = memory_chat(written=7900)

    async def run_before(pilot: Pilot) -> None:
        for text in MESSAGES:
            await send(pilot, text)
        await pilot.press("f7")
        await until(pilot, lambda: chat.query_one(MemoryPanel).shown)
        steady_cursor(pilot)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
