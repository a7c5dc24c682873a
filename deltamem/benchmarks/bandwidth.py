"""The physical limit of decode: the bytes one decoded token must read, against a measured read rate.

A decode step of batch 1 multiplies one vector by every weight matrix, so it reads every weight once (the output
head included; of the input embedding only one row) and every layer's KV cache. Memory cannot deliver those bytes
faster than a plain reduction reads a large buffer, so `bytes / read rate` is the fastest a decode step can be, and
the limit over the measured time is the fraction of the machine's memory bandwidth that decode reached. On a GPU or a
CPU that is not compute-bound this fraction is what tells a slow kernel from a slow machine.

The read rate is that of `torch.sum` over a 256 MiB float32 buffer (far larger than any cache) with the bench's
threads. The probe also times `copy_` between two such buffers and reports the bytes of the source over the time:
a copy also writes (and on a CPU reads each target line before writing it), so it counts half or a third of the
traffic, and on a 2-core AMD EPYC it gave 14 GB/s where the sum read 32 and a one-row bf16 product 26. Both are
measured inside the timed repeats of the decode, interleaved with the lanes, so that they see the same machine.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from deltamem.benchmarks.common import synchronize
from deltamem.model import DeltaMemModel
from deltamem.quantization import storage_bytes

#: Bytes of the buffers read and copied.
PROBE_BYTES = 256 * 2**20

#: Reads and copies per probe; the probe reports the fastest of each (the rate the memory sustains at that moment).
TRIES = 3


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


class BandwidthProbe:
    """Times a read and a copy of large buffers on a device; `rates()` is the fastest of a few of each, in bytes/s."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.source = torch.ones(PROBE_BYTES // 4, dtype=torch.float32, device=device)
        self.target = torch.empty_like(self.source)
        self.target.copy_(self.source)        # touch every page once

    def rates(self) -> tuple[float, float]:
        """(read rate, copy rate), bytes per second."""
        return self._fastest(self.source.sum), self._fastest(lambda: self.target.copy_(self.source))

    def _fastest(self, work) -> float:
        best = float("inf")
        for _ in range(TRIES):
            synchronize(self.device)
            start = time.perf_counter()
            work()
            synchronize(self.device)
            best = min(best, time.perf_counter() - start)
        return PROBE_BYTES / best
