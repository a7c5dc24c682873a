"""The in-place KV cache: same attention as transformers' DynamicCache, without copying the cache per token."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from deltamem.compat import cache_argument, crop_cache, output_cache
from deltamem.kv_cache import STEP, GrowingLayer, new_cache, reserve
from deltamem.testing import random_backbone


def _ids(n: int, seed: int, batch: int = 1) -> torch.Tensor:
    return torch.randint(3, 290, (batch, n), generator=torch.Generator().manual_seed(seed))


def _run(model, cache, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Feed the chunks in turn through one cache; crop to 20 positions after the second, as a rollback does."""
    keyword = cache_argument(model)
    logits = []
    for number, chunk in enumerate(chunks):
        out = model(input_ids=chunk, use_cache=True, **{keyword: cache})
        cache = output_cache(out)
        logits.append(out.logits)
        if number == 1:
            crop_cache(cache, 20)
    return logits


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_growing_cache_gives_the_dynamic_cache_logits(attn: str) -> None:
    model = random_backbone("tiny", attn=attn)
    chunks = [_ids(17, 0, batch=2), _ids(6, 1, batch=2), *(_ids(1, 2 + t, batch=2) for t in range(12)),
              _ids(9, 30, batch=2)]
    with torch.no_grad():
        expected = _run(model, DynamicCache(config=model.config), chunks)
        got = _run(model, new_cache(model), chunks)
    for number, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=f"chunk {number}")


def test_new_cache_swaps_in_growing_layers_for_full_attention() -> None:
    model = random_backbone("tiny")
    cache = new_cache(model)
    with torch.no_grad():
        model(input_ids=_ids(5, 0), use_cache=True, **{cache_argument(model): cache})
    assert cache.layers and all(type(layer) is GrowingLayer for layer in cache.layers)


def test_appends_write_in_place_and_the_buffer_grows_geometrically() -> None:
    layer = GrowingLayer()
    keys = torch.randn(2, 3, 1000, 4)
    buffers = set()
    for t in range(1000):
        k, v = layer.update(keys[:, :, t:t + 1], -keys[:, :, t:t + 1])
        buffers.add(k.data_ptr())
        assert k.shape[-2] == t + 1
    torch.testing.assert_close(layer.keys, keys, rtol=0, atol=0)
    torch.testing.assert_close(layer.values, -keys, rtol=0, atol=0)
    assert len(buffers) <= 8, f"{len(buffers)} buffers for 1000 appends: the cache is being copied"
    assert layer._key_buffer.shape[-2] % STEP == 0


def test_a_cropped_or_replaced_cache_is_adopted_on_the_next_append() -> None:
    layer = GrowingLayer()
    first = torch.randn(1, 2, 10, 4)
    layer.update(first, first)
    layer.crop(-4)                                   # a rollback: keep 6 positions
    new = torch.randn(1, 2, 1, 4)
    k, _ = layer.update(new, new)
    torch.testing.assert_close(k, torch.cat([first[:, :, :6], new], dim=2), rtol=0, atol=0)
    layer.batch_select_indices(torch.tensor([0, 0]))  # a new batch of two: no longer the buffer's front
    more = torch.randn(2, 2, 1, 4)
    k, v = layer.update(more, more)
    assert k.shape == (2, 2, 8, 4)
    torch.testing.assert_close(k[:, :, :7], torch.cat([first[:, :, :6], new], dim=2).expand(2, -1, -1, -1),
                               rtol=0, atol=0)
    torch.testing.assert_close(v[:, :, 7:], more, rtol=0, atol=0)


def test_a_reserved_cache_grows_once_to_exactly_the_size_it_was_told() -> None:
    model = random_backbone("tiny")
    cache = new_cache(model)
    reserve(cache, 700)
    keys = torch.randn(1, 2, 700, 4)
    layer = cache.layers[0]
    buffers = set()
    for start in range(0, 600, 100):                 # a prompt in spans, then a reply token by token
        buffers.add(layer.update(keys[:, :, start:start + 100], keys[:, :, start:start + 100])[0].data_ptr())
    for t in range(600, 700):
        buffers.add(layer.update(keys[:, :, t:t + 1], keys[:, :, t:t + 1])[0].data_ptr())
    assert len(buffers) == 1 and layer._key_buffer.shape[-2] == 700
    torch.testing.assert_close(layer.keys, keys, rtol=0, atol=0)
    layer.update(keys[:, :, :1], keys[:, :, :1])     # past what was reserved: grows as before
    assert layer.keys.shape[-2] == 701 and layer._key_buffer.shape[-2] == -(-(701 + 701 // 4) // STEP) * STEP
