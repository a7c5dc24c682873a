"""What every bench mode shares: the settings, a random δ-mem model to run, one timed turn, medians.

A turn is what the app does per answer: from an empty KV cache and an empty memory, prefill the prompt (keeping only
the last position's logits, as `generate` does), then feed the decode tokens one at a time through the cache. The
decode tokens are a fixed sequence, not sampled, so that every lane does exactly the same work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from deltamem.compat import cache_argument, output_cache
from deltamem.config import DeltaMemConfig
from deltamem.model import DeltaMemModel
from deltamem.shapes import SHAPES, random_backbone, randomize_adapter

#: The configuration of the released adapters (rank 8, alpha 16, q/o corrections, one state head).
RELEASED = DeltaMemConfig(output_init="base_slice_fixed", delta_heads=("q", "o"))

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

    @property
    def vocab(self) -> int:
        return SHAPES[self.shape].vocab


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def build_model(settings: Settings) -> DeltaMemModel:
    """A random backbone of the shape with a random released-configuration adapter (nothing is downloaded)."""
    backbone = random_backbone(settings.shape, dtype=settings.dtype, attn=settings.attn, device=settings.device,
                               seed=settings.seed)
    model = DeltaMemModel(backbone, RELEASED)
    randomize_adapter(model, seed=settings.seed + 1)
    return model.eval()


def token_ids(settings: Settings, length: int, rows: int = 1, salt: int = 0) -> Tensor:
    """Seeded random token ids [rows, length] on the bench device; every row is the same sequence."""
    generator = torch.Generator().manual_seed(settings.seed * 1000 + salt)
    ids = torch.randint(0, settings.vocab, (1, length), generator=generator)
    return ids.repeat(rows, 1).to(settings.device)


@torch.no_grad()
def run_turn(model: DeltaMemModel, prompt: Tensor, decode: Tensor, memory: Sequence[bool]) -> tuple[float, float]:
    """One turn from an empty cache and memory; returns (prefill seconds, decode seconds for all decode tokens)."""
    from transformers import DynamicCache

    device = prompt.device
    cache_kw = cache_argument(model)
    model.reset()
    with model.rows(memory=list(memory)):
        synchronize(device)
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1,
                    **{cache_kw: DynamicCache(config=model.backbone.config)})
        synchronize(device)
        prefilled = time.perf_counter()
        cache = output_cache(out)
        for t in range(decode.shape[1]):
            cache = output_cache(model(input_ids=decode[:, t:t + 1], use_cache=True, **{cache_kw: cache}))
        synchronize(device)
        done = time.perf_counter()
    return prefilled - start, done - prefilled
