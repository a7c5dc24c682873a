"""Messages longer than the window: read whole into memory in bounded chunks, the prompts holding their cut tail."""

from __future__ import annotations

import functools
import random
import threading

import pytest
import torch

from deltamem.context import ContextPolicy
from deltamem.runtime import prefill
from deltamem.runtime.contract import DELTA, FROZEN, GenerationSettings, LaneDone, ReadProgress, TurnDone
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.long_inputs import CUT_MARKER, PromptTooLong, read_into_memory
from deltamem.testing import byte_chatml_tokenizer, random_delta_model
from tests.conftest import make_engine

WINDOW = 40


def _text(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghij klmnopqrstuvwxyz.") for _ in range(n))


def _max_positions(model) -> list[int]:
    """Record the largest position id of every forward of `model` (a list that grows as it runs)."""
    seen: list[int] = []
    original = model.backbone.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        positions = kwargs.get("position_ids")
        seen.append(int(positions.max()) if positions is not None else kwargs["input_ids"].shape[1] - 1)
        return original(*args, **kwargs)

    model.backbone.forward = forward
    return seen


def test_a_message_of_fifty_windows_is_written_whole_and_the_prompts_hold_its_cut_tail() -> None:
    engine = make_engine(policy=f"window:{WINDOW}")
    positions = _max_positions(engine.model)
    message = {"role": "user", "content": _text(50 * WINDOW)}
    engine.add_message("user", message["content"])
    events = list(engine.read())
    progress = [e for e in events if isinstance(e, ReadProgress)]
    total = len(engine.renderer.ids([message]))
    assert progress and progress[-1].done == progress[-1].total == total and progress[-1].lane == DELTA
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert done.written_total == {FROZEN: 0, DELTA: total}, "every token of the message, once"
    assert done.stats[DELTA].long_read == done.stats[DELTA].long_total == total
    for name in (FROZEN, DELTA):
        shown = engine.renderer.text([{"role": "user", "content": ""}])
        assert engine.lanes[name].processed == engine.renderer.ids(engine._view(engine.lanes[name], [0]))
        assert len(engine.lanes[name].processed) <= WINDOW and CUT_MARKER.strip() in engine.tokenizer.decode(
            engine.lanes[name].processed), shown
    assert max(positions) < WINDOW, "no forward, chunked or not, attends past the window"
    assert all(group.length <= WINDOW for group in engine._groups.values())
    events = list(engine.turn("ok?", GenerationSettings(max_new_tokens=4)))
    assert {e.lane for e in events if isinstance(e, LaneDone)} == {FROZEN, DELTA}
    assert engine.lanes[DELTA].written_total > total


def test_chunked_reading_equals_one_forward_when_the_text_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefill, "PREFILL_CHUNK", 16)
    model = random_delta_model(dtype=torch.float64)
    ids = list(range(3, 103))
    with torch.no_grad():
        model.reset()
        model(input_ids=torch.tensor([ids]))
    whole = model.get_state()
    *_, result = read_into_memory(model, ids, 128, state={}, written=0, allows_writes=lambda n: True, cancel=None,
                                  lane=DELTA)
    assert (result.done, result.total) == (100, 100) and model.tokens_written == [100]
    for name, state in model.get_state().items():
        assert torch.allclose(state, whole[name], atol=1e-10, rtol=0), name


def test_past_its_span_a_read_restarts_its_cache_and_never_passes_the_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefill, "PREFILL_CHUNK", 16)
    model = random_delta_model()
    positions = _max_positions(model)
    ids = [3 + i % 200 for i in range(500)]
    *_, result = read_into_memory(model, ids, 48, state={}, written=7, allows_writes=lambda n: True, cancel=None,
                                  lane=DELTA)
    assert result.done == 500 and model.tokens_written == [507]
    assert max(positions) < 48


def test_cancel_mid_read_keeps_the_chunks_done_and_the_lanes_consistent() -> None:
    engine = make_engine(policy=f"window:{WINDOW}")
    cancel = threading.Event()
    engine.add_message("user", _text(30 * WINDOW, seed=1))
    seen = []
    for event in engine.read(cancel=cancel):
        seen.append(event)
        if isinstance(event, ReadProgress) and len(seen) == 3:
            cancel.set()
    done = seen[-1]
    read = done.stats[DELTA]
    assert 0 < read.long_read < read.long_total and read.cancelled
    assert done.written_total[DELTA] == read.long_read, "what was fully written, and nothing else"
    assert engine.lanes[DELTA].read_upto == 1, "the message is not read again"
    events = list(engine.turn("and now?", GenerationSettings(max_new_tokens=3)))
    assert isinstance(events[-1], TurnDone) and engine.lanes[DELTA].messages[-1]["role"] == "assistant"


def test_a_turn_cancelled_during_a_long_read_gives_no_reply() -> None:
    engine = make_engine(policy=f"window:{WINDOW}")
    cancel = threading.Event()
    events = []
    for event in engine.turn(_text(20 * WINDOW, seed=2), GenerationSettings(max_new_tokens=5), cancel=cancel):
        events.append(event)
        cancel.set()
    assert not any(type(e).__name__ == "TokenEvent" for e in events)
    assert [m["role"] for m in engine.lanes[DELTA].messages] == ["user"]


def test_under_full_a_prompt_beyond_the_models_positions_is_refused_before_any_forward() -> None:
    model = random_delta_model()
    model.backbone.config.max_position_embeddings = 100
    engine = ABEngine(model, byte_chatml_tokenizer(), policy=ContextPolicy())
    positions = _max_positions(model)
    with pytest.raises(PromptTooLong, match=r"the prompt is 2\d\d tokens and the reply may add 8, beyond the "
                                            r"model's 100 positions"):
        list(engine.turn(_text(200), GenerationSettings(max_new_tokens=8)))
    assert positions == [] and all(not lane.messages for lane in engine.lanes.values())
    list(engine.turn("short", GenerationSettings(max_new_tokens=8)))
    assert len(engine.lanes[DELTA].messages) == 2
