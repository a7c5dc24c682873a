"""Feeding the rows of a lane group: one batched forward, or the rows one at a time into the same batched KV cache,
whichever the device runs faster; measured on the engine's own feeds, once per kind of feed, then reused.

Both lanes of an A/B group decode together in one batch: on a GPU, and on a CPU whose decode reads weights, two
rows cost little more than one. Prefill is another matter. A long chunk is compute-bound on a CPU, so a batch of
two costs what the two rows cost apart, and more where the rows' chunks differ in length (the batch pads the
shorter one to the longer). So for a chunk of at least `MIN_WIDTH` tokens `lanes_forward` may feed the rows one at
a time: each row's forward reads and writes that row of the group's cache (`RowLayer`) and that row of the memory
(`DeltaMemModel.single_row`), so what it leaves is what the batched forward would have left, and decode continues
batched.

Which is faster is measured, not assumed: the first chunk of a kind (device, dtype, model width, rows, a
power-of-two width bucket) runs one way (rows on a CPU, batched elsewhere), the next one of the same kind the
other way, each timed per token it computes (batched: rows x width, padding included; rows: the real tokens);
from then on every chunk of that kind runs the way that costs less for its own lengths. The measurements live for
the process and are shared by every engine on the same kind of model.

Either way a long chunk is fed in spans of at most `PREFILL_CHUNK` tokens, one forward each into the same cache
and memory (`chunked_forward`). One forward over a whole long prompt holds each layer's activations for all its
tokens at once, while what stays is only their keys and values: at the Qwen3-4B width one MLP intermediate of
4,096 tokens is 80 MB in bf16, and a 4,096-token turn of 4 of its layers took 390 MB above the weights in one
forward (the cache is 67 MB of it) against 177 MB in spans. A token's result does not change: its attention still
sees every token before it and the memory is written token by token in order, so results differ by rounding only.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import DynamicLayer

from deltamem.compat import output_cache
from deltamem.kv_cache import new_cache
from deltamem.model import DeltaMemModel
from deltamem.runtime.kernels import one_row

#: Chunks narrower than this always run batched (decode steps, short messages): the choice is prefill's.
MIN_WIDTH = 64

#: The most tokens one prefill forward computes (see the module doc).
PREFILL_CHUNK = 512

BATCHED, ROWS = "batched", "rows"

#: Per kind of chunk, seconds per computed token of each way measured so far.
_RATES: dict[tuple, dict[str, float]] = {}


@dataclass
class LanesOutput:
    """What `lanes_forward` returns: each row's logits after its last position, and the cache."""

    logits: Tensor        # [B, 1, V]
    cache: Any


def lanes_forward(model: DeltaMemModel, *, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
                  cache_kw: str, cache: Any) -> LanesOutput:
    """One chunk per row (right-aligned in `input_ids`, `attention_mask` over the cache and the chunk) into the
    group's `cache`, batched or row by row (see the module doc); only the last position's logits are computed."""
    batch, width = input_ids.shape
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache_kw=cache_kw,
                  cache=cache)
    if batch == 1 or width < MIN_WIDTH or not _rowwise_possible(cache):
        return chunked_forward(model, **kwargs)
    lengths = [int(n) for n in attention_mask[:, -width:].sum(dim=1).tolist()]
    kind = _kind(model, batch, width)
    way = choose(kind, lengths, width, input_ids.device)
    device = input_ids.device
    _synchronize(device)
    start = time.perf_counter()
    out = chunked_forward(model, **kwargs) if way == BATCHED else _by_rows(model, lengths, **kwargs)
    _synchronize(device)
    record(kind, way, time.perf_counter() - start, batch * width if way == BATCHED else sum(lengths))
    return out


def choose(kind: tuple, lengths: list[int], width: int, device: torch.device) -> str:
    """The way to feed a chunk: the one not yet measured for its kind, else the cheaper for these lengths."""
    rates = _RATES.get(kind, {})
    first = ROWS if device.type == "cpu" else BATCHED
    for way in (first, BATCHED if first == ROWS else ROWS):
        if way not in rates:
            return way
    return ROWS if rates[ROWS] * sum(lengths) < rates[BATCHED] * len(lengths) * width else BATCHED


def record(kind: tuple, way: str, seconds: float, tokens: int) -> None:
    """Keep the first measurement of a way for a kind (seconds per computed token)."""
    if tokens > 0:
        _RATES.setdefault(kind, {}).setdefault(way, seconds / tokens)


def measurements() -> dict[tuple, dict[str, float]]:
    """What has been measured so far (for reports and tests)."""
    return {kind: dict(rates) for kind, rates in _RATES.items()}


def _kind(model: DeltaMemModel, batch: int, width: int) -> tuple:
    config = model.backbone.config
    weight = model.layers[0].memory_q_proj
    return (weight.device.type, str(weight.dtype), config.hidden_size, config.num_hidden_layers, batch,
            1 << (width.bit_length() - 1))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def spans(width: int, most: int | None = None) -> list[slice]:
    """`width` positions cut into as few spans of at most `most` (default `PREFILL_CHUNK`) as can be, of nearly
    equal lengths (a 600-token prompt is two of 300, not 512 and 88)."""
    if width <= 0:
        return []
    count = -(-width // (most or PREFILL_CHUNK))
    size = -(-width // count)
    return [slice(start, min(width, start + size)) for start in range(0, width, size)]


def chunked_forward(model: DeltaMemModel, *, input_ids: Tensor, cache_kw: str, cache: Any,
                    attention_mask: Tensor | None = None, position_ids: Tensor | None = None) -> LanesOutput:
    """`input_ids` [B, W] into `cache` in spans of at most `PREFILL_CHUNK` tokens (`spans`), one forward each;
    `attention_mask` [B, P + W] covers the P cached positions and the chunk, `position_ids` [B, W] (both optional,
    as for the model). A single token of a single row (a lone lane's decode step) runs on the faster CPU kernel for
    one row (`deltamem.runtime.kernels`). Returns the last position's logits and the cache."""
    width = input_ids.shape[1]
    past = attention_mask.shape[1] - width if attention_mask is not None else 0
    out = None
    for span in spans(width):
        inputs: dict[str, Tensor] = {"input_ids": input_ids[:, span]}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask[:, :past + span.stop]
        if position_ids is not None:
            inputs["position_ids"] = position_ids[:, span]
        with one_row(model) if input_ids.shape == (1, 1) else nullcontext():
            out = model(**inputs, use_cache=True, logits_to_keep=1, **{cache_kw: cache})
        cache = output_cache(out)
    if out is None:
        raise ValueError("a forward needs at least one token")
    return LanesOutput(out.logits, cache)


def _rowwise_possible(cache: Any) -> bool:
    """Rows can be fed apart into caches whose layers are plain keys-and-values layers (the engine's)."""
    layers = getattr(cache, "layers", None)
    return layers is not None and all(isinstance(layer, DynamicLayer) for layer in layers)


def _by_rows(model: DeltaMemModel, lengths: list[int], *, input_ids: Tensor, attention_mask: Tensor,
             position_ids: Tensor, cache_kw: str, cache: Any) -> LanesOutput:
    """Each row's chunk alone, into its row of the group's cache and memory."""
    batch, width = input_ids.shape
    past = attention_mask.shape[1] - width
    _extend(model, cache, batch, width, past, input_ids.device)
    logits: list[Tensor | None] = []
    for row, length in enumerate(lengths):
        if not length:
            logits.append(None)
            continue
        row_cache = new_cache(model)
        row_cache.layers = [RowLayer(layer.keys, layer.values, row, past + width - length) for layer in cache.layers]
        with model.single_row(row, batch):
            out = chunked_forward(model, input_ids=input_ids[row:row + 1, width - length:],
                                  attention_mask=attention_mask[row:row + 1],
                                  position_ids=position_ids[row:row + 1, width - length:], cache_kw=cache_kw,
                                  cache=row_cache)
        logits.append(out.logits)
    template = next(t for t in logits if t is not None)
    return LanesOutput(torch.cat([t if t is not None else torch.zeros_like(template) for t in logits]), cache)


def _extend(model: DeltaMemModel, cache: Any, batch: int, width: int, past: int, device: torch.device) -> None:
    """Append `width` zero positions to every layer of the group's cache: the rows' chunks are written into them,
    and whatever a shorter chunk leaves is a hole that the mask hides (zeros, so it adds nothing either)."""
    config = model.backbone.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dtype = model.backbone.get_input_embeddings().weight.dtype
    zeros = torch.zeros(batch, config.num_key_value_heads, width, head_dim, dtype=dtype, device=device)
    for index in range(config.num_hidden_layers):
        cache.update(zeros, zeros, index)
    if cache.get_seq_length() != past + width:
        raise RuntimeError(f"the group's cache holds {cache.get_seq_length()} positions, not {past + width}")


class RowLayer(DynamicLayer):
    """One row of a batched cache layer seen as a batch of one: it reads that row, and its appends write into that
    row of the batched layer's positions (which `_extend` made room for)."""

    def __init__(self, keys: Tensor, values: Tensor, row: int, filled: int) -> None:
        super().__init__()
        self._keys, self._values = keys[row:row + 1], values[row:row + 1]
        self.keys, self.values = self._keys[:, :, :filled], self._values[:, :, :filled]
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            raise RuntimeError(f"a row's chunk runs past its room in the batched cache ({end} > "
                               f"{self._keys.shape[-2]})")
        self._keys[:, :, start:end].copy_(key_states)
        self._values[:, :, start:end].copy_(value_states)
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values
