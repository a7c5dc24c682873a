"""What every bench mode shares: the settings, a random δ-mem model to run, one timed turn, medians.

A turn is what the app does per answer: prefill what the KV cache does not hold yet (keeping only the last position's
logits, in the engine's spans of at most `PREFILL_CHUNK` tokens), then feed the decode tokens one at a time through
the cache, as the engine does (a lone row on the faster one-row kernel). A first turn starts from an empty cache and
memory with the whole prompt; a follow-up turn starts from a conversation already in both and prefills only the new
message. The decode tokens are a fixed sequence, not sampled, so that every lane does exactly the same work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from deltamem.compat import cache_argument, crop_cache
from deltamem.config import DeltaMemConfig
from deltamem.kv_cache import new_cache, reserve
from deltamem.model import DeltaMemModel
from deltamem.quantization import quantize_backbone
from deltamem.runtime.prefill import PREFILL_CHUNK, chunked_forward
from deltamem.shapes import BackboneShape, resolve
from deltamem.testing import random_backbone, randomize_adapter

#: The configuration of the released adapters (rank 8, alpha 16, q/o corrections, one state head).

#: The two lanes of an A/B chat: the frozen backbone (memory off for the row) and the δ-mem model.
LANES = {"frozen": False, "delta": True}


@dataclass(frozen=True)
class Settings:
    """One bench run's model and measurement settings."""

    shape: str
    device: torch.device
    dtype: torch.dtype
    attn: str
    repeats: int
    warmup: int
    seed: int = 0
    layers: int | None = None      # the named shape's own when None
    vocab_size: int | None = None
    prefill_chunk: int = PREFILL_CHUNK

    @property
    def backbone_shape(self) -> BackboneShape:
        return resolve(self.shape, self.layers, self.vocab_size)

    @property
    def vocab(self) -> int:
        return self.backbone_shape.vocab


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def build_model(settings: Settings, quantize: str = "none") -> DeltaMemModel:
    """A random backbone of the shape with a random released-configuration adapter (nothing is downloaded), its
    backbone quantized as asked (weights only; δ-mem's matrices as they were)."""
    backbone = random_backbone(settings.backbone_shape, dtype=settings.dtype, attn=settings.attn,
                               device=settings.device, seed=settings.seed)
    model = DeltaMemModel(backbone, DeltaMemConfig.released())
    randomize_adapter(model, seed=settings.seed + 1)
    return quantize_backbone(model, quantize).eval()


def build_models(settings: Settings, quantizations: Sequence[str]) -> dict[str, DeltaMemModel]:
    """One model per quantization, from the same seeds: the same random weights, stored each way."""
    return {mode: build_model(settings, mode) for mode in quantizations}


def token_ids(settings: Settings, length: int, rows: int = 1, salt: int = 0) -> Tensor:
    """Seeded random token ids [rows, length] on the bench device; every row is the same sequence."""
    generator = torch.Generator().manual_seed(settings.seed * 1000 + salt)
    ids = torch.randint(0, settings.vocab, (1, length), generator=generator)
    return ids.repeat(rows, 1).to(settings.device)


@torch.no_grad()
def run_turn(model: DeltaMemModel, prompt: Tensor, decode: Tensor, memory: Sequence[bool]) -> tuple[float, float]:
    """One turn from an empty cache and memory; returns (prefill seconds, decode seconds for all decode tokens)."""
    model.reset()
    return timed_turn(model, new_cache(model), prompt, decode, memory)


@torch.no_grad()
def timed_turn(model: DeltaMemModel, cache: Any, prompt: Tensor, decode: Tensor, memory: Sequence[bool]
               ) -> tuple[float, float]:
    """Prefill `prompt` into `cache` (whatever it and the memory hold), then feed the decode tokens one at a time."""
    device = prompt.device
    cache_kw = cache_argument(model)
    reserve(cache, cache.get_seq_length() + prompt.shape[1] + decode.shape[1])       # as the engine does
    with model.rows(memory=list(memory)):
        synchronize(device)
        start = time.perf_counter()
        cache = chunked_forward(model, input_ids=prompt, cache_kw=cache_kw, cache=cache).cache
        synchronize(device)
        prefilled = time.perf_counter()
        for t in range(decode.shape[1]):
            cache = chunked_forward(model, input_ids=decode[:, t:t + 1], cache_kw=cache_kw, cache=cache).cache
        synchronize(device)
        done = time.perf_counter()
    return prefilled - start, done - prefilled


class FollowUpTurn:
    """A turn in a running chat: `context` tokens already in the KV cache and the memory, then a new message is
    prefilled and the reply decoded. The context is prefilled once; each call rewinds to it (cache cropped, memory
    restored), so every call does the same work."""

    def __init__(self, model: DeltaMemModel, context: Tensor, message: Tensor, decode: Tensor,
                 memory: Sequence[bool]) -> None:
        self.model, self.message, self.decode, self.memory = model, message, decode, list(memory)
        self.length = context.shape[1]
        model.reset()
        self.cache = new_cache(model)
        timed_turn(model, self.cache, context, decode[:, :0], self.memory)
        self.state = model.get_state()

    def __call__(self) -> tuple[float, float]:
        crop_cache(self.cache, self.length)
        self.model.reset()
        if self.state:
            self.model.set_state(self.state)
        return timed_turn(self.model, self.cache, self.message, self.decode, self.memory)
