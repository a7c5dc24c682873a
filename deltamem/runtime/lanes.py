"""Lanes: one conversation each, on one shared backbone. `frozen` has its memory off, `delta` has it on.

A lane owns its messages, the token ids its KV cache holds, its memory state and its write counters. Lanes that
run together share one batched KV cache (a `LaneGroup`); run one after the other, each lane is a group of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class TurnStats:
    """What one lane did in one turn."""

    tokens: int = 0                  # tokens generated
    written: int = 0                 # tokens written into memory during the turn (prompt and reply)
    ttft_s: float | None = None      # time to first token, from the start of the turn
    tokens_per_s: float | None = None
    seconds: float = 0.0
    cancelled: bool = False
    rebuilt: bool = False            # the KV cache was rebuilt from the prompt (read-only) this turn

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Lane:
    """One side of the A/B comparison."""

    name: str
    memory: bool
    messages: list[dict[str, str]] = field(default_factory=list)
    processed: list[int] = field(default_factory=list)
    state: dict[str, Tensor] = field(default_factory=dict)
    written_total: int = 0
    turns: list[TurnStats] = field(default_factory=list)
    read_upto: int = 0               # messages before this index have been read (and written) by a forward

    def clear(self) -> None:
        """Forget the conversation and the memory."""
        self.messages.clear()
        self.processed.clear()
        self.state = {}
        self.written_total = 0
        self.turns.clear()
        self.read_upto = 0


@dataclass
class LaneGroup:
    """Lanes decoded together in one batch: one KV cache, right-aligned rows, a 2D mask with the padding holes."""

    lanes: list[Lane]
    cache: Any = None
    mask: Tensor | None = None       # [B, L] long, 1 = a real token in the cache
    epoch: int = 0                   # bumped whenever the cache is dropped, so stale checkpoints can tell

    def drop_cache(self) -> None:
        self.cache = None
        self.mask = None
        self.epoch += 1

    def positions(self) -> Tensor:
        """How many real tokens each row holds: the next position id of each row."""
        if self.mask is None:
            return torch.zeros(len(self.lanes), dtype=torch.long)
        return self.mask.sum(dim=1)
