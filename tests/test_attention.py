"""A CPU decode step's attention with each key-value group's query heads packed: the same output as transformers'
SDPA and eager attention, taken only where it applies, and undone by `detach()`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deltamem.attention import PACKED_SDPA, packed_sdpa
from deltamem.compat import cache_argument
from deltamem.kv_cache import new_cache
from deltamem.testing import random_delta_model


class _Module(nn.Module):
    """What an attention function reads off its module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True
        self.training = False


def _inputs(groups: int, length: int, dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(groups * 100 + length)
    kv_heads, dim, cached = 2, 16, 37
    query = torch.randn(3, kv_heads * groups, length, dim, generator=generator).to(dtype)
    key, value = (torch.randn(3, kv_heads, cached, dim, generator=generator).to(dtype) for _ in range(2))
    mask = torch.ones(3, 1, length, cached, dtype=torch.bool)
    mask[0, :, :, :5] = False                      # row 0 is left-padded
    return query, key, value, mask


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("groups", [2, 4])
def test_one_query_packed_equals_transformers_sdpa_and_eager(groups: int, masked: bool) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.qwen3.modeling_qwen3 import eager_attention_forward

    query, key, value, mask = _inputs(groups, 1)
    mask = mask if masked else None
    module = _Module(groups)
    out, weights = packed_sdpa(module, query, key, value, mask, scaling=0.25)
    reference, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    additive = None if mask is None else torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    eager, _ = eager_attention_forward(module, query, key, value, additive, scaling=0.25)
    assert weights is None and out.shape == reference.shape == (3, 1, 2 * groups, 16)
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, eager, atol=1e-6, rtol=1e-5)


def test_everything_but_one_query_on_a_cpu_is_transformers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import deltamem.attention as attention

    calls = []
    monkeypatch.setattr(attention, "sdpa_attention_forward",
                        lambda *a, **k: calls.append(a[1].shape) or ("theirs", None))
    for groups, length, extra in ((2, 5, {}), (1, 1, {}), (2, 1, {"dropout": 0.1}), (2, 1, {"softcap": 3.0})):
        query, key, value, _ = _inputs(groups, length)
        assert packed_sdpa(_Module(groups), query, key, value, None, **extra)[0] == "theirs"
    assert len(calls) == 4


def test_the_model_runs_packed_attention_in_decode_and_detach_restores_sdpa(monkeypatch) -> None:
    model = random_delta_model(attn="sdpa")                         # 4 query heads over 2 key-value heads
    config = model.backbone.config
    assert config._attn_implementation == PACKED_SDPA
    assert random_delta_model(attn="eager").backbone.config._attn_implementation == "eager"
    queries = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query, *args, **kwargs):
        queries.append(tuple(query.shape))
        return sdpa(query, *args, **kwargs)

    ids = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(3))
    argument = cache_argument(model)
    logits = []
    for implementation in (PACKED_SDPA, "sdpa"):
        config._attn_implementation = implementation
        model.reset()
        cache = new_cache(model)
        with torch.no_grad():
            model(input_ids=ids[:, :8], use_cache=True, **{argument: cache})
            monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
            logits.append(model(input_ids=ids[:, 8:], use_cache=True, **{argument: cache}).logits)
            monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    layers = config.num_hidden_layers
    assert queries[:layers] == [(1, 2, 2, 16)] * layers, "the packed step: 2 groups of 2 query heads"
    assert all(shape[1] != 2 or shape[2] != 2 for shape in queries[layers:]), "plain SDPA does not pack"
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=1e-5)
    config._attn_implementation = PACKED_SDPA
    assert model.detach().config._attn_implementation == "sdpa"
