"""A lane group's chunks fed row by row leave what one batched forward leaves, and the engine feeds each kind of
chunk the way measured to be faster."""

from __future__ import annotations

import pytest
import torch

from deltamem.runtime import prefill
from deltamem.runtime.contract import GenerationSettings, LaneDone, TurnDone
from tests.conftest import make_engine

TURNS = ["My name is Ada and I live in Lisbon.", "I keep a cat called Pixel.", "What is my cat called?"]


def _converse(engine) -> list[dict[str, str]]:
    replies = []
    for text in TURNS:
        events = list(engine.turn(text, GenerationSettings(max_new_tokens=8)))
        assert isinstance(events[-1], TurnDone)
        replies.append({e.lane: e.text for e in events if isinstance(e, LaneDone)})
    return replies


def _forced(monkeypatch: pytest.MonkeyPatch, way: str):
    monkeypatch.setattr(prefill, "MIN_WIDTH", 2)                   # every chunk but a decode step
    monkeypatch.setattr(prefill, "choose", lambda *args: way)
    engine = make_engine(policy="window:60")                        # a window that slides: re-read chunks too
    return _converse(engine), engine


def test_rows_fed_apart_give_the_batched_tokens_states_and_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    batched, one = _forced(monkeypatch, prefill.BATCHED)
    by_rows, other = _forced(monkeypatch, prefill.ROWS)
    assert by_rows == batched
    assert any(turn["frozen"] != turn["delta"] for turn in batched), "the lanes' replies differ, so do their chunks"
    assert other.lanes["delta"].written_total == one.lanes["delta"].written_total > 0
    assert other.lanes["frozen"].state == {} and other.lanes["frozen"].written_total == 0
    for name, state in one.lanes["delta"].state.items():
        torch.testing.assert_close(other.lanes["delta"].state[name], state, atol=1e-5, rtol=1e-5)
    assert set(other._diagnostics(next(iter(other._groups.values())))) == {"delta"}


def test_each_kind_of_chunk_is_measured_both_ways_once_then_the_cheaper_runs(monkeypatch) -> None:
    monkeypatch.setattr(prefill, "_RATES", {})
    cpu, kind = torch.device("cpu"), ("cpu", "torch.bfloat16", 2560, 36, 2, 512)
    assert prefill.choose(kind, [600, 600], 600, cpu) == prefill.ROWS          # a CPU tries rows first
    prefill.record(kind, prefill.ROWS, 1.2, 1200)                               # 1 ms a token
    assert prefill.choose(kind, [600, 600], 600, cpu) == prefill.BATCHED
    prefill.record(kind, prefill.BATCHED, 1.08, 1200)                           # 0.9 ms a token slot
    prefill.record(kind, prefill.BATCHED, 9.0, 1200)                            # measured once: kept
    assert prefill.measurements()[kind] == pytest.approx({prefill.ROWS: 1e-3, prefill.BATCHED: 9e-4})
    assert prefill.choose(kind, [600, 600], 600, cpu) == prefill.BATCHED       # equal lengths: batched is cheaper
    assert prefill.choose(kind, [600, 100], 600, cpu) == prefill.ROWS          # padding makes rows cheaper
    assert prefill.choose(kind, [600, 600], 600, torch.device("meta")) == prefill.BATCHED


def test_the_engine_measures_its_own_long_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefill, "_RATES", {})
    monkeypatch.setattr(prefill, "MIN_WIDTH", 16)
    engine = make_engine()
    list(engine.turn(TURNS[0], GenerationSettings(max_new_tokens=2)))
    list(engine.turn(TURNS[1] * 2, GenerationSettings(max_new_tokens=2)))
    measured = [rates for kind, rates in prefill.measurements().items() if kind[4] == 2]
    assert measured and all(set(rates) <= {prefill.ROWS, prefill.BATCHED} for rates in measured)


def test_rows_of_unequal_length_leave_holes_the_mask_hides(delta_model) -> None:
    """Row 0's chunk is shorter: fed apart, its part of the new columns is a hole, as the batch's padding is."""
    from deltamem.compat import cache_argument
    from deltamem.kv_cache import new_cache

    model = delta_model(attn="sdpa")
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(4))
    chunk = torch.ones(2, 12, dtype=torch.long)
    chunk[0, :5] = 0                                                # row 0: 7 tokens, right-aligned
    positions = (chunk.cumsum(1) - 1).clamp(min=0)
    results = []
    for way in (prefill.chunked_forward, lambda m, **kw: prefill._by_rows(m, [7, 12], **kw)):
        model.reset()
        cache = new_cache(model)
        with torch.no_grad(), model.rows(memory=[True, True]):
            out = way(model, input_ids=ids, attention_mask=chunk, position_ids=positions,
                      cache_kw=cache_argument(model), cache=cache)
        results.append((out.logits, model.get_state(), model.tokens_written, out.cache.layers[0].keys))
    (logits, states, written, keys), (row_logits, row_states, row_written, row_keys) = results
    torch.testing.assert_close(row_logits, logits, atol=1e-5, rtol=1e-5)
    assert row_written == written == [7, 12]
    for name, state in states.items():
        torch.testing.assert_close(row_states[name], state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(row_keys[1], keys[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(row_keys[0, :, 5:], keys[0, :, 5:], atol=1e-5, rtol=1e-5)
    assert torch.equal(row_keys[0, :, :5], torch.zeros_like(row_keys[0, :, :5]))


def test_spans_cover_the_chunk_evenly_within_the_limit() -> None:
    assert prefill.spans(0) == []
    assert prefill.spans(5, 8) == [slice(0, 5)]
    assert prefill.spans(600, 512) == [slice(0, 300), slice(300, 600)]
    cut = prefill.spans(4097, 512)
    assert len(cut) == 9 and max(s.stop - s.start for s in cut) <= 512
    assert [s.start for s in cut[1:]] == [s.stop for s in cut[:-1]] and cut[-1].stop == 4097


@pytest.mark.parametrize("rows", [1, 2])
def test_a_long_chunk_fed_in_spans_leaves_what_one_forward_leaves(delta_model, monkeypatch, rows: int) -> None:
    """Logits, the memory's state, the written counts and the cache: the same whether the chunk is one forward or
    several, for a lone row and for two rows of unequal length (padding at the start of the first span)."""
    from deltamem.compat import cache_argument
    from deltamem.kv_cache import new_cache

    model = delta_model(attn="sdpa")
    ids = torch.randint(0, 300, (rows, 40), generator=torch.Generator().manual_seed(5))
    chunk = torch.ones(rows, 40, dtype=torch.long)
    chunk[0, :9] = 0                                                # row 0: 31 tokens, right-aligned
    positions = (chunk.cumsum(1) - 1).clamp(min=0)
    calls, results = [], []
    forward = model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    for most in (512, 16):
        monkeypatch.setattr(prefill, "PREFILL_CHUNK", most)
        calls.clear()
        model.reset()
        with torch.no_grad(), model.rows(memory=[True] * rows):
            out = prefill.chunked_forward(model, input_ids=ids, attention_mask=chunk, position_ids=positions,
                                          cache_kw=cache_argument(model), cache=new_cache(model))
        results.append((out.logits, model.get_state(), model.tokens_written, out.cache.layers[0].keys, list(calls)))
    (logits, states, written, keys, whole), (span_logits, span_states, span_written, span_keys, cut) = results
    assert whole == [40] and cut == [14, 14, 12]
    torch.testing.assert_close(span_logits, logits, atol=1e-5, rtol=1e-5)
    assert span_written == written == ([31] if rows == 1 else [31, 40])
    for name, state in states.items():
        torch.testing.assert_close(span_states[name], state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(span_keys, keys, atol=1e-5, rtol=1e-5)


def test_the_engine_sizes_its_cache_once_for_the_prompt_and_the_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first turn's cache is made as large as its prompt and the reply's room, once, with no spare quarter."""
    from deltamem.kv_cache import GrowingLayer
    from deltamem.runtime.engine import CLOSING_ROOM

    grown: list[int] = []
    original = GrowingLayer._grow

    def counting(self, keys, values, length, end):
        original(self, keys, values, length, end)
        grown.append(self._key_buffer.shape[-2])

    monkeypatch.setattr(GrowingLayer, "_grow", counting)
    engine = make_engine()
    list(engine.turn(TURNS[0] * 4, GenerationSettings(max_new_tokens=8)))
    group = next(iter(engine._groups.values()))
    layers = group.cache.layers
    prompt = len(engine.renderer.ids([{"role": "user", "content": TURNS[0] * 4}], True))
    room = prompt + 8 + CLOSING_ROOM
    assert grown == [room] * len(layers)
    assert all(layer.keys.shape[-2] <= room for layer in layers)
