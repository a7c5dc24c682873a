"""The δ-mem model on tiny offline backbones: caching, switches, padding, counters, state, not-PEFT."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from deltamem import DeltaMemError, NotMergeableError
from deltamem.compat import cache_argument, crop_cache, output_cache
from deltamem.kv_cache import new_cache
from deltamem.masks import token_validity
from deltamem.testing import random_backbone

ATTNS = ["eager", "sdpa"]


def _ids(n: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.randint(3, 290, (batch, n), generator=torch.Generator().manual_seed(seed))


def _forward_cached(model, ids: torch.Tensor, cache):
    out = model(input_ids=ids, use_cache=True, **{cache_argument(model): cache})
    return out.logits, output_cache(out)


@pytest.mark.parametrize("attn", ATTNS)
@pytest.mark.parametrize("config", [{}, {"num_state_heads": 4}, {"delta_heads": ("q", "k", "v", "o")},
                                    {"state_update_mode": "lambda_outside", "couple_lambda": False,
                                     "rankwise_gates": False}, {"state_update_mode": "no_lambda"},
                                    {"trainable_delta_scale": True, "delta_o_rmsnorm": True}])
def test_full_prefill_equals_prefill_then_single_steps(delta_model, attn: str, config: dict) -> None:
    model = delta_model(attn=attn, dtype=torch.float64, **config)
    ids = _ids(40)
    with torch.no_grad():
        full = model(input_ids=ids).logits
        full_state = model.get_state()
        model.reset()
        logits, cache = _forward_cached(model, ids[:, :33], DynamicCache(config=model.backbone.config))
        parts = [logits]
        for t in range(33, 40):
            logits, cache = _forward_cached(model, ids[:, t:t + 1], cache)
            parts.append(logits)
    assert (torch.cat(parts, dim=1) - full).abs().max() < 1e-10
    for name, state in model.get_state().items():
        assert (state - full_state[name]).abs().max() < 1e-10


@pytest.mark.parametrize("attn", ATTNS)
def test_memory_off_is_the_plain_backbone_bit_for_bit(delta_model, attn: str) -> None:
    model = delta_model(attn=attn)
    ids = _ids(20, batch=2, seed=3)
    with torch.no_grad():
        plain = random_backbone("tiny", attn=attn)(input_ids=ids).logits
        with model.rows(memory=[False, False]):
            off = model(input_ids=ids).logits
        with model.rows(memory=[False, True]):
            mixed = model(input_ids=ids).logits
    assert torch.equal(off, plain)
    assert torch.equal(mixed[0], plain[0]), "the frozen row of a mixed batch must be the backbone exactly"
    assert not torch.allclose(mixed[1], plain[1], atol=1e-3), "the δ-mem row must differ (the adapter is random)"
    assert set(model.get_state()) == set(model.layer_names)
    assert model.tokens_written == [0, 20]


def test_detach_gives_back_the_untouched_backbone(delta_model) -> None:
    model = delta_model()
    ids = _ids(10)
    with torch.no_grad():
        plain = random_backbone("tiny", attn="eager")(input_ids=ids).logits
        assert not torch.allclose(model(input_ids=ids).logits, plain)
        backbone = model.detach()
        assert torch.equal(backbone(input_ids=ids).logits, plain)


def test_writes_off_leave_the_state_unchanged(delta_model) -> None:
    model = delta_model()
    with torch.no_grad():
        model(input_ids=_ids(12))
        before = model.get_state()
        written = model.tokens_written
        with model.read_only():
            model(input_ids=_ids(9, seed=1))
        assert all(torch.equal(before[k], v) for k, v in model.get_state().items())
        assert model.tokens_written == written
        model(input_ids=_ids(3, seed=2))
        assert not all(torch.equal(before[k], v) for k, v in model.get_state().items())


def test_per_row_switches_isolate_rows(delta_model) -> None:
    model = delta_model()
    ids = torch.cat([_ids(16, seed=4), _ids(16, seed=5)])
    with torch.no_grad():
        model(input_ids=ids[1:])
        alone_state = model.get_state()
        alone_logits = model(input_ids=ids[1:]).logits
        model.reset()
        model.set_rows(memory=[True, True], writes=[False, True])
        model(input_ids=ids)
        states = model.get_state()
        for name, state in states.items():
            assert torch.count_nonzero(state[0]) == 0, "row 0 has writes off and must stay empty"
            assert torch.allclose(state[1], alone_state[name][0], atol=1e-6)
        other = torch.cat([_ids(16, seed=6), ids[1:]])
        batched = model(input_ids=other).logits
        model.set_rows()
    assert torch.allclose(batched[1], alone_logits[0], atol=1e-5), "row 1 must not see row 0's input"
    assert model.tokens_written == [0, 32]


@pytest.mark.parametrize("attn", ATTNS)
def test_a_padded_row_equals_the_unpadded_sequence(delta_model, attn: str) -> None:
    model = delta_model(attn=attn)
    seq = _ids(14, seed=7)
    pad = 5
    ids = torch.cat([torch.zeros(1, pad, dtype=torch.long), seq], dim=1)
    mask = torch.cat([torch.zeros(1, pad, dtype=torch.long), torch.ones(1, 14, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone = model(input_ids=seq).logits
        alone_state = model.get_state()
        model.reset()
        padded = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(padded[:, pad:], alone, atol=1e-5)
    for name, state in model.get_state().items():
        assert torch.allclose(state, alone_state[name], atol=1e-6)
    assert model.tokens_written == [14]


def test_token_validity_reads_every_mask_form() -> None:
    pad = torch.tensor([[0, 0, 1, 1, 1]])
    expected = pad.bool()
    allowed = torch.tril(torch.ones(5, 5, dtype=torch.bool)) & pad.bool()[:, None, :]
    bool_4d = allowed[:, None]
    additive = torch.where(bool_4d, 0.0, torch.finfo(torch.float32).min)
    assert torch.equal(token_validity(pad, 1, 5, torch.device("cpu")), expected)
    assert torch.equal(token_validity(bool_4d, 1, 5, torch.device("cpu")), expected)
    assert torch.equal(token_validity(additive, 1, 5, torch.device("cpu")), expected)
    assert token_validity(None, 2, 3, torch.device("cpu")).all()
    assert torch.equal(token_validity(pad, 1, 2, torch.device("cpu")), torch.tensor([[True, True]]))


@pytest.mark.parametrize("form", ["bool", "additive"])
def test_attention_called_alone_reads_4d_masks_right(delta_model, form: str) -> None:
    """Without the decoder's 2D mask the wrapper must read the kernel's own 4D mask the right way round."""
    model = delta_model()
    attn = model.backbone.model.layers[0].self_attn
    rotary = model.backbone.model.rotary_emb
    x = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([[False, False, True, True, True, True]])
    allowed = (torch.tril(torch.ones(6, 6, dtype=torch.bool)) & keep[:, None, :])[:, None]
    mask = allowed if form == "bool" else torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    pos = rotary(x, torch.arange(6)[None])
    with torch.no_grad():
        attn(hidden_states=x, position_embeddings=pos, attention_mask=mask)
    state = model.get_state()[model.layer_names[0]]
    model.reset()
    with torch.no_grad():
        attn(hidden_states=x[:, 2:], position_embeddings=rotary(x[:, 2:], torch.arange(4)[None]),
             attention_mask=None)
    assert torch.allclose(state, model.get_state()[model.layer_names[0]], atol=1e-6)


def test_state_can_be_saved_and_restored_to_continue(delta_model) -> None:
    model = delta_model()
    first, second = _ids(10, seed=8), _ids(6, seed=9)
    with torch.no_grad():
        model(input_ids=first)
        saved, counts = model.get_state(), model.tokens_written
        straight = model(input_ids=second).logits
        model.reset()
        assert model.get_state() == {} and model.tokens_written == []
        model.set_state(saved)
        model.set_tokens_written(counts)
        resumed = model(input_ids=second).logits
    assert torch.equal(straight, resumed)
    assert model.tokens_written == [16]


def test_state_batch_mismatch_is_an_error_not_a_silent_reset(delta_model) -> None:
    model = delta_model()
    with torch.no_grad():
        model(input_ids=_ids(4))
        with pytest.raises(DeltaMemError, match="holds 1 rows but the input has 2"):
            model(input_ids=_ids(4, batch=2))
    with pytest.raises(DeltaMemError, match="shape"):
        model.set_state({model.layer_names[0]: torch.zeros(1, 4, 4)})
    with pytest.raises(DeltaMemError, match="unknown layer"):
        model.set_state({"model.nowhere": torch.zeros(1, 8, 8)})


def test_ssw_without_ids_falls_back_to_token_writes(delta_model) -> None:
    ids = _ids(12, seed=10)
    tsw = delta_model(seed=3)
    ssw = delta_model(seed=3, memory_write_granularity="message_mean")
    with torch.no_grad():
        expected = tsw(input_ids=ids).logits
        assert torch.allclose(ssw(input_ids=ids).logits, expected, atol=1e-6)
        ssw.reset()
        with ssw.write_segments(torch.tensor([[0] * 6 + [1] * 6])):
            ssw(input_ids=ids)
        assert ssw.tokens_written == [12]
        assert not all(torch.allclose(ssw.get_state()[k], v) for k, v in tsw.get_state().items())


def test_diagnostics_are_per_row_and_plausible(delta_model) -> None:
    model = delta_model()
    with torch.no_grad():
        model(input_ids=_ids(8, batch=2))
    diag = model.diagnostics()
    layers = [f"state_norm.{index}" for index in range(len(model.layer_names))]
    assert set(diag) == {"beta_mean", "delta_o_ratio", "state_norm", *layers}
    assert all(len(v) == 2 for v in diag.values())
    for row in range(2):  # the overall norm is the layers' mean
        assert diag["state_norm"][row] == pytest.approx(sum(diag[key][row] for key in layers) / len(layers))
    assert all(0 < b < 1 for b in diag["beta_mean"])
    assert all(r > 0 for r in diag["delta_o_ratio"]) and all(n > 0 for n in diag["state_norm"])


def test_merging_is_refused_with_the_reason(delta_model) -> None:
    model = delta_model()
    for merge in (model.merge_and_unload, model.merge_adapter, model.merge):
        with pytest.raises(NotMergeableError, match="read and written at run time"):
            merge()


def test_a_model_without_supported_attention_is_refused() -> None:
    from deltamem import DeltaMemConfig, DeltaMemModel

    with pytest.raises(DeltaMemError, match="no attention module"):
        DeltaMemModel(torch.nn.Linear(3, 3), DeltaMemConfig())


@torch.no_grad()
def test_the_cached_fused_weights_follow_every_in_place_update(delta_model) -> None:
    """Projection and correction weights are stacked once and cached; an update must never leave a stale copy."""
    model = delta_model(delta_heads=("q", "k", "v", "o"))
    layer = model.layers[0]
    x = torch.randn(1, 3, layer.shape.hidden, generator=torch.Generator().manual_seed(0))
    reads = torch.randn(1, 3, layer.config.read_dim, generator=torch.Generator().manual_seed(1))
    layer.project(x), layer.corrections(reads)                     # fill the caches
    layer.beta_bias.fill_(3.0)
    layer.delta_v_proj.mul_(-2.0)
    layer.load_state_dict({**layer.state_dict(), "delta_o_proj": torch.zeros_like(layer.delta_o_proj)})
    beta = layer.project(x)[2]
    expected_beta = torch.sigmoid(x @ layer.beta_proj.T + 3.0).unflatten(-1, (layer.config.num_state_heads, -1))
    torch.testing.assert_close(beta, expected_beta.expand_as(beta))
    out = layer.corrections(reads)
    for branch in ("q", "k", "v", "o"):
        weight = getattr(layer, f"delta_{branch}_proj")
        torch.testing.assert_close(out[branch], reads @ weight.T * layer.config.scaling)
    assert not out["o"].any()


def _decode_setup(model, ids: torch.Tensor, mask: torch.Tensor | None = None):
    """Prefill `ids` through a fresh cache (writes on); returns the cache."""
    kwargs = {} if mask is None else {"attention_mask": mask}
    out = model(input_ids=ids, use_cache=True, **kwargs, **{cache_argument(model): new_cache(model)})
    return output_cache(out)


@torch.no_grad()
def test_a_masked_row_in_a_decode_step_keeps_its_memory_exactly(delta_model) -> None:
    """Decode writes all layers in one batch after the forward; a row whose token is padding must not write."""
    model = delta_model(attn="sdpa")
    ids = _ids(10, seed=11, batch=2)
    cache = _decode_setup(model, ids)
    before = model.get_state()
    step = _ids(1, seed=12, batch=2)
    mask = torch.tensor([[1] * 10 + [0], [1] * 11])
    model(input_ids=step, attention_mask=mask, use_cache=True, **{cache_argument(model): cache})
    after = model.get_state()
    assert model.tokens_written == [10, 11]
    for name in model.layer_names:
        assert torch.equal(after[name][0], before[name][0]), "the padded row wrote into memory"
        assert not torch.equal(after[name][1], before[name][1])
    model.reset()                                    # row 1 alone, no padding: the same state
    model(input_ids=torch.cat([ids[1:], step[1:]], dim=1))
    for name, state in model.get_state().items():
        torch.testing.assert_close(after[name][1], state[0], atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_a_decode_step_that_fails_writes_nothing(delta_model) -> None:
    model = delta_model()
    cache = _decode_setup(model, _ids(8, seed=13))
    before = model.get_state()

    def fail(*_: object) -> None:
        raise RuntimeError("boom")

    handle = model.backbone.model.layers[-1].mlp.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        model(input_ids=_ids(1, seed=14), use_cache=True, **{cache_argument(model): cache})
    handle.remove()
    assert all(torch.equal(before[name], state) for name, state in model.get_state().items())
    model.reset()                                    # and the next forward runs as usual
    fresh = model(input_ids=_ids(8, seed=13)).logits
    assert torch.isfinite(fresh).all() and model.tokens_written == [8]


@torch.no_grad()
def test_decode_follows_adapter_updates_between_tokens(delta_model) -> None:
    """Decode fetches its fused weights once per forward: an update between two tokens must show in the second."""
    model = delta_model(attn="sdpa")
    ids = _ids(9, seed=15)
    cache = _decode_setup(model, ids)
    keyword = cache_argument(model)
    model(input_ids=_ids(1, seed=16), use_cache=True, **{keyword: cache})
    for layer in model.layers:
        layer.delta_q_proj.zero_()
        layer.delta_o_proj.zero_()
    step = _ids(1, seed=17)
    memory_on = model(input_ids=step, use_cache=True, **{keyword: cache}).logits
    crop_cache(cache, 10)
    with model.rows(memory=[False]):
        frozen = model(input_ids=step, use_cache=True, **{keyword: cache}).logits
    torch.testing.assert_close(memory_on, frozen, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_decode_diagnostics_match_the_corrections_applied(delta_model) -> None:
    """‖Δo‖/‖o‖ of a decode step, computed on demand after an in-place add, against o and o + Δo seen directly."""
    model = delta_model(attn="sdpa")
    cache = _decode_setup(model, _ids(7, seed=18))
    seen: dict[int, list[torch.Tensor]] = {}
    handles = []
    for index, attention in enumerate(model._attentions):
        o_proj = attention.o_proj
        handles.append(o_proj.register_forward_pre_hook(
            lambda module, args, i=index: seen.__setitem__(i, [torch.nn.functional.linear(args[0], module.weight)])))
        handles.append(o_proj.register_forward_hook(
            lambda module, args, output, i=index: seen[i].append(output.clone())))
    model(input_ids=_ids(1, seed=19), use_cache=True, **{cache_argument(model): cache})
    for handle in handles:
        handle.remove()
    ratios = [torch.linalg.vector_norm(after - base) / torch.linalg.vector_norm(base) for base, after in seen.values()]
    expected = torch.stack(ratios).mean().item()
    assert model.diagnostics()["delta_o_ratio"][0] == pytest.approx(expected, rel=1e-4)
