"""The physical limit of decode: the bytes one decoded token must read, against a measured copy rate.

A decode step of batch 1 multiplies one vector by every weight matrix, so it reads every weight once (the output
head included; of the input embedding only one row) and every layer's KV cache. Memory cannot deliver those bytes
faster than it copies a large buffer, so `bytes / copy rate` is the fastest a decode step can be, and the limit
over the measured time is the fraction of the machine's memory bandwidth that decode reached. On a GPU or a CPU that
is not compute-bound this fraction is what tells a slow kernel from a slow machine.

The copy rate is that of `torch.Tensor.copy_` between two 256 MiB buffers (far larger than any cache) with the
bench's threads: bytes of the source over seconds, the way `a read of 8 GB takes 1 s` is meant. It is measured
inside the timed repeats of the decode, interleaved with the lanes, so that it sees the same machine they do.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from deltamem.benchmarks.common import synchronize
from deltamem.model import DeltaMemModel
from deltamem.quantization import storage_bytes

#: Bytes of the copied buffer.
COPY_BYTES = 256 * 2**20

#: Copies per probe; the probe reports the fastest (the rate the memory can sustain at that moment).
COPIES = 3


def weight_bytes_read(model: DeltaMemModel, memory: bool) -> int:
    """Bytes of parameters one decoded token reads: every weight of the backbone except the input embedding (one
    row; unless the head shares its matrix, which it then reads whole), plus δ-mem's own when the lane has memory."""
    backbone = model.backbone
    embeddings = {id(m.weight) for m in backbone.modules() if isinstance(m, nn.Embedding)}
    linears = {id(m.weight) for m in backbone.modules() if isinstance(m, nn.Linear)}
    seen: set[int] = set()
    total = 0
    for param in backbone.parameters():
        if id(param) in seen or (id(param) in embeddings and id(param) not in linears):
            continue
        seen.add(id(param))
        total += storage_bytes(param)
    if memory:
        total += sum(storage_bytes(p) for p in model.layers.parameters())
    return total


def kv_bytes_read(model: DeltaMemModel, tokens: int) -> int:
    """Bytes of keys and values a token reads when the cache holds `tokens` positions (every layer)."""
    config = model.backbone.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim
    return per_token * tokens * model.backbone.get_input_embeddings().weight.element_size()


class CopyProbe:
    """Times `copy_` between two large buffers on a device; `rate()` is the fastest of a few copies, in bytes/s."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.source = torch.ones(COPY_BYTES, dtype=torch.uint8, device=device)
        self.target = torch.empty_like(self.source)
        self.target.copy_(self.source)        # touch every page once

    def rate(self) -> float:
        best = float("inf")
        for _ in range(COPIES):
            synchronize(self.device)
            start = time.perf_counter()
            self.target.copy_(self.source)
            synchronize(self.device)
            best = min(best, time.perf_counter() - start)
        return COPY_BYTES / best
