"""The A/B runtime on a tiny offline model: lanes, batching, windows, budget, cancel, sessions, loading errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from deltamem.context import ContextPolicy, PolicyError, WriteBudget
from deltamem.runtime.contract import GenerationSettings, LaneDone, SessionIdentity, TokenEvent, TurnDone
from deltamem.runtime.session_io import SessionError, load_session, save_session
from tests.conftest import make_engine

USER_TURNS = ["My name is Ada and I live in Lisbon.", "I keep a cat called Pixel.", "What is my cat called?",
              "Where do I live?"]
GREEDY = GenerationSettings(max_new_tokens=10)


def _converse(engine, turns=USER_TURNS, settings=GREEDY) -> list[dict[str, str]]:
    replies = []
    for text in turns:
        events = list(engine.turn(text, settings))
        assert isinstance(events[-1], TurnDone)
        replies.append({e.lane: e.text for e in events if isinstance(e, LaneDone)})
    return replies


def _rendered_length(engine, lane: str) -> int:
    return len(engine.renderer.ids(engine.lanes[lane].messages, False))


def test_batched_lanes_equal_sequential_lanes_token_for_token() -> None:
    batched = _converse(make_engine(batched=True))
    sequential = _converse(make_engine(batched=False))
    assert batched == sequential
    assert any(turn["frozen"] != turn["delta"] for turn in batched), "the memory should change something"


def test_seeded_sampling_is_reproducible_and_batching_invariant() -> None:
    settings = GenerationSettings(max_new_tokens=8, temperature=0.9, top_p=0.9, top_k=40, seed=7)
    first = _converse(make_engine(batched=True), USER_TURNS[:2], settings)
    assert first == _converse(make_engine(batched=False), USER_TURNS[:2], settings)
    other = _converse(make_engine(batched=True), USER_TURNS[:2], GenerationSettings(8, 0.9, 0.9, 40, seed=8))
    assert other != first


def test_the_frozen_lane_is_the_plain_backbone_generating_greedily() -> None:
    engine = make_engine()
    events = list(engine.turn(USER_TURNS[0], GREEDY))
    frozen = next(e.text for e in events if isinstance(e, LaneDone) and e.lane == "frozen")
    backbone = engine.model.detach()
    prompt = engine.renderer.ids([{"role": "user", "content": USER_TURNS[0]}], True)
    with torch.no_grad():
        out = backbone.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                eos_token_id=engine.tokenizer.eos_token_id, pad_token_id=engine.tokenizer.pad_token_id)
    expected = engine.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)
    assert frozen == expected


def test_lanes_are_isolated() -> None:
    with_frozen = make_engine()
    alone = make_engine()
    _converse(with_frozen)
    for text in USER_TURNS:
        list(alone.turn(text, GREEDY, lanes=["delta"]))
    assert with_frozen.lanes["delta"].messages == alone.lanes["delta"].messages
    for name, state in with_frozen.lanes["delta"].state.items():
        assert torch.allclose(state, alone.lanes["delta"].state[name], atol=1e-5)
    assert with_frozen.lanes["frozen"].written_total == 0 and with_frozen.lanes["frozen"].state == {}


@pytest.mark.parametrize("policy", ["full", "window:90", "window:40"])
def test_every_token_is_written_exactly_once(policy: str) -> None:
    engine = make_engine(policy=policy)
    _converse(engine)
    delta = engine.lanes["delta"]
    assert delta.written_total == _rendered_length(engine, "delta")
    assert sum(turn.written for turn in delta.turns) == delta.written_total
    if policy == "window:40":
        assert any(turn.rebuilt for turn in delta.turns), "a small window must slide"


def test_the_window_keeps_the_same_recent_messages_in_both_lanes() -> None:
    engine = make_engine(policy="window:60")
    _converse(engine)
    lanes = list(engine.lanes.values())
    windows = engine._window(lanes)
    assert windows[0] == windows[1]
    assert windows[0][-1] == len(lanes[0].messages) - 1 and 0 not in windows[0]
    assert ContextPolicy.parse("window 60") == ContextPolicy(60) and str(ContextPolicy.parse("full")) == "full"
    with pytest.raises(PolicyError, match="window:N"):
        ContextPolicy.parse("sometimes")


def test_budget_warns_past_the_horizon_and_can_stop_writes() -> None:
    budget = WriteBudget(horizon=50)
    assert budget.status(49) == "ok" and budget.status(50) == "warning"
    engine = make_engine(budget=WriteBudget(horizon=30, stop_at_horizon=True))
    _converse(engine, USER_TURNS[:1])
    first = engine.lanes["delta"].written_total
    assert first >= 30 and engine.budget.status(first) == "stopped"
    state = {k: v.clone() for k, v in engine.lanes["delta"].state.items()}
    _converse(engine, USER_TURNS[1:2])
    assert engine.lanes["delta"].written_total == first
    assert all(torch.equal(v, state[k]) for k, v in engine.lanes["delta"].state.items())


def test_cancel_mid_turn_leaves_both_lanes_consistent() -> None:
    engine = make_engine()
    cancel = threading.Event()
    streamed = 0
    done = []
    for event in engine.turn(USER_TURNS[0], GenerationSettings(max_new_tokens=200), cancel=cancel):
        if isinstance(event, TokenEvent):
            streamed += 1
            if streamed == 4:
                cancel.set()
        if isinstance(event, LaneDone):
            done.append(event)
    assert {d.lane for d in done} == {"frozen", "delta"}
    assert all(d.stats.tokens <= 3 for d in done) and any(d.stats.cancelled for d in done)
    for lane in engine.lanes.values():
        assert lane.messages[-1]["role"] == "assistant"
    assert engine.lanes["delta"].written_total == _rendered_length(engine, "delta")
    replies = _converse(engine, USER_TURNS[1:2])
    assert set(replies[0]) == {"frozen", "delta"}


def test_a_consumer_that_stops_listening_leaves_the_lanes_consistent() -> None:
    engine = make_engine()
    stream = engine.turn(USER_TURNS[0], GenerationSettings(max_new_tokens=50))
    for event in stream:
        if isinstance(event, TokenEvent):
            break
    stream.close()
    assert all(lane.messages[-1]["role"] == "assistant" for lane in engine.lanes.values())
    _converse(engine, USER_TURNS[1:2])


def test_probe_rollback_leaves_no_trace() -> None:
    engine = make_engine()
    _converse(engine, USER_TURNS[:2])
    point = engine.checkpoint()
    state = {k: v.clone() for k, v in engine.lanes["delta"].state.items()}
    first = _converse(engine, USER_TURNS[2:3])
    engine.rollback(point)
    assert all(torch.equal(v, state[k]) for k, v in engine.lanes["delta"].state.items())
    assert len(engine.lanes["delta"].messages) == 4
    assert _converse(engine, USER_TURNS[2:3]) == first


def test_save_load_continue_equals_never_stopping(tmp_path: Path) -> None:
    straight = make_engine(policy="window:120")
    expected = _converse(straight)
    resumed = make_engine(policy="window:120")
    _converse(resumed, USER_TURNS[:2])
    identity = SessionIdentity(base="tiny", adapter="random")
    save_session(resumed, tmp_path, identity)
    fresh = make_engine(policy="full")
    load_session(fresh, tmp_path, identity)
    assert str(fresh.policy) == "window:120"
    assert _converse(fresh, USER_TURNS[2:]) == expected[2:]
    assert fresh.lanes["delta"].written_total == straight.lanes["delta"].written_total


def test_loading_a_session_of_another_model_says_so(tmp_path: Path) -> None:
    engine = make_engine()
    _converse(engine, USER_TURNS[:1])
    save_session(engine, tmp_path, SessionIdentity(base="Qwen/Qwen3-4B", adapter="a"))
    with pytest.raises(SessionError, match="made with base 'Qwen/Qwen3-4B'.*running 'tiny'"):
        load_session(make_engine(), tmp_path, SessionIdentity(base="tiny", adapter="a"))
    with pytest.raises(SessionError, match="no saved session"):
        load_session(make_engine(), tmp_path / "nowhere", SessionIdentity(base="tiny", adapter="a"))
    (tmp_path / "session.json").write_text("{broken")
    with pytest.raises(SessionError, match="session.json: not valid JSON"):
        load_session(make_engine(), tmp_path, SessionIdentity(base="tiny", adapter="a"))


def test_the_ab_check_runs_one_turn_per_lane_mode(capsys) -> None:
    from deltamem.benchmarks.ab_check import main

    assert main(["--shape", "tiny", "--device", "cpu", "--prompt-tokens", "64", "--new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    for mode in ("batched", "sequential"):
        for lane in ("frozen", "delta"):
            assert f"{mode:>10} {lane:>6}: ttft" in out
        assert f"{mode:>10} turn:" in out and "peak memory" in out
    assert "3 tokens, 0 written" in out


def test_fixed_length_decoding_ignores_eos() -> None:
    engine = make_engine()
    events = list(engine.turn(USER_TURNS[0], GenerationSettings(max_new_tokens=25, stop_at_eos=False)))
    assert all(e.stats.tokens == 25 for e in events if isinstance(e, LaneDone))


def test_lanes_moving_between_groups_never_use_a_stale_cache() -> None:
    """Frozen lane off for a turn, then on again: the batched cache no longer matches and must be rebuilt.

    A stale cache would show in the frozen lane, which must still be the backbone generating from its prompt.
    """
    engine = make_engine()
    _converse(engine, USER_TURNS[:1])
    list(engine.turn(USER_TURNS[1], GREEDY, lanes=["delta"]))
    engine.add_message("user", USER_TURNS[1], lanes=["frozen"])
    engine.add_message("assistant", "Noted.", lanes=["frozen"])
    engine.add_message("user", USER_TURNS[2])
    prompt = engine.renderer.ids(engine.lanes["frozen"].messages, True)
    replies = {e.lane: e for e in engine.respond(GREEDY) if isinstance(e, LaneDone)}
    assert replies["frozen"].stats.rebuilt
    with torch.no_grad(), engine.model.rows(memory=[False]):
        out = engine.model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                    eos_token_id=engine.tokenizer.eos_token_id,
                                    pad_token_id=engine.tokenizer.pad_token_id)
    assert replies["frozen"].text == engine.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)
    assert engine.lanes["delta"].written_total == _rendered_length(engine, "delta")


@pytest.mark.parametrize("batched", [True, False])
def test_turn_done_carries_the_memory_lanes_diagnostics_by_name(batched: bool) -> None:
    """The model's rows follow the last group it ran (every lane batched, the last lane alone one after the other);
    the engine maps them to lane names, so `TurnDone.diagnostics` holds the memory lanes only."""
    engine = make_engine(batched=batched)
    done = list(engine.turn("My name is Ada.", GenerationSettings(max_new_tokens=3)))[-1]
    rows = engine.model.diagnostics()
    row = 1 if batched else 0
    assert done.diagnostics == {"delta": {key: pytest.approx(values[row]) for key, values in rows.items()}}
    assert done.written_total == {name: engine.lanes[name].written_total for name in engine.lanes}
    frozen_only = list(engine.turn("Hello.", GenerationSettings(max_new_tokens=2), lanes=["frozen"]))[-1]
    assert frozen_only.diagnostics == {} and set(frozen_only.written_total) == {"frozen"}
