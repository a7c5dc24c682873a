"""A KV cache layer that appends in place instead of concatenating.

transformers' `DynamicLayer` appends with `torch.cat`, so every decoded token copies the whole cache of every layer:
at a 4,096-token context on a CPU that copy is over half of a decode step, and it grows with each row of a batch.
`GrowingLayer` keeps the keys and values in a buffer with spare room (a quarter more than needed, in steps of
`STEP` positions) and writes each new token into it; what it hands to attention is a view of the filled part. The
buffer only moves when it is full, so appends cost O(new tokens), amortised. Where the caller knows how long the
cache will get (a prompt and the room its reply may take), `reserve` makes the next buffer exactly that size, so a
prompt fed in spans moves the buffer once instead of at every few spans, and a GPU does not hold the spare quarter
(150 MB at the Qwen3-4B shape and 4,096 tokens; on a CPU pages never written take no memory).

Everything else (crop, lengths, masks, batch selection) is `DynamicLayer`'s: a cropped or reassigned `keys` is
detected on the next append and adopted.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn
from transformers.cache_utils import DynamicLayer

#: Buffers grow in multiples of this many positions.
STEP = 256

#: transformers 5.x initialises a layer from keys and values, 4.56/4.57 from the keys alone.
_INIT_TAKES_VALUES = len(inspect.signature(DynamicLayer.lazy_initialization).parameters) > 2


class GrowingLayer(DynamicLayer):
    """`DynamicLayer` with in-place appends into a buffer that grows geometrically."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._key_buffer: Tensor | None = None
        self._value_buffer: Tensor | None = None
        self.expected = 0                     # positions the caller said the cache will hold (`reserve`)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(*((key_states, value_states) if _INIT_TAKES_VALUES else (key_states,)))
        length = self.get_seq_length()
        end = length + key_states.shape[-2]
        if not self._room_for(key_states, end):
            self._grow(key_states, value_states, length, end)
        self._key_buffer[:, :, length:end].copy_(key_states)
        self._value_buffer[:, :, length:end].copy_(value_states)
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def _room_for(self, key_states: Tensor, end: int) -> bool:
        """Whether `keys` still is the front of the buffer and the buffer has room up to `end`."""
        buffer = self._key_buffer
        if buffer is None or end > buffer.shape[-2] or buffer.shape[:2] != key_states.shape[:2]:
            return False
        if buffer.dtype != key_states.dtype or buffer.device != key_states.device:
            return False
        if self.keys is None or self.keys.numel() == 0:
            return True
        return (self.keys.data_ptr() == buffer.data_ptr() and self.keys.stride() == buffer.stride()
                and self.values.data_ptr() == self._value_buffer.data_ptr())

    def _grow(self, key_states: Tensor, value_states: Tensor, length: int, end: int) -> None:
        """New buffers holding the `length` positions cached so far, with room for what `reserve` said, or else for
        a quarter more than `end`."""
        capacity = self.expected if end <= self.expected else -(-(end + end // 4) // STEP) * STEP
        buffers = []
        for old, new in ((self.keys, key_states), (self.values, value_states)):
            buffer = new.new_empty(*new.shape[:2], capacity, new.shape[-1])
            if length:
                buffer[:, :, :length].copy_(old)
            buffers.append(buffer)
        self._key_buffer, self._value_buffer = buffers


def grow_in_place(cache: Any) -> Any:
    """Swap every plain `DynamicLayer` of a fresh `DynamicCache` for a `GrowingLayer` (others stay as they are)."""
    layers = getattr(cache, "layers", None)
    if layers:
        cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in layers]
    elif getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = GrowingLayer
    return cache


def reserve(cache: Any, positions: int) -> None:
    """Say that `cache` will hold `positions` positions: a growing layer that must grow makes its buffer that size,
    not a quarter larger (a hint; appends past it grow as before)."""
    for layer in getattr(cache, "layers", None) or []:
        if isinstance(layer, GrowingLayer):
            layer.expected = positions


def new_cache(model: nn.Module) -> Any:
    """An empty dynamic KV cache for this model whose full-attention layers append in place (`GrowingLayer`)."""
    from transformers import DynamicCache

    config = getattr(getattr(model, "backbone", model), "config", None)
    try:
        cache = DynamicCache(config=config)
    except TypeError:
        cache = DynamicCache()
    return grow_in_place(cache)
