"""Lanes: one conversation each, on one shared backbone. `frozen` has its memory off, `delta` has it on; `rag` and
`delta+rag` also get the messages their window dropped retrieved back into the prompt.

A lane owns its messages, the token ids its KV cache holds, its memory state and its write counters. Lanes that
run together share one batched KV cache (a `LaneGroup`); run one after the other, each lane is a group of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from deltamem.compat import crop_cache
from deltamem.runtime.contract import TurnStats


@dataclass(frozen=True)
class LaneSnapshot:
    """A lane's conversation, memory and counters at one moment (a checkpoint), without its cache."""

    messages: tuple[dict[str, str], ...]
    processed: tuple[int, ...]
    state: dict[str, Tensor]
    written_total: int
    turns: int
    read_upto: int
    window_start: int | None

    def to_record(self) -> dict[str, Any]:
        """The snapshot as JSON data, without the memory state (saved apart, as safetensors) and the turn count."""
        return {"messages": list(self.messages), "processed": list(self.processed),
                "written_total": self.written_total, "read_upto": self.read_upto, "window_start": self.window_start}

    @classmethod
    def from_record(cls, record: dict[str, Any], state: dict[str, Tensor]) -> LaneSnapshot:
        """`to_record`'s data back, with the memory state; TypeError, ValueError or KeyError on malformed data."""
        messages = tuple({"role": str(m["role"]), "content": str(m["content"])} for m in record["messages"])
        window_start = record.get("window_start")
        return cls(messages, tuple(int(i) for i in record["processed"]), state, int(record["written_total"]), 0,
                   int(record["read_upto"]), None if window_start is None else int(window_start))


@dataclass
class Lane:
    """One side of the A/B comparison."""

    name: str
    memory: bool
    retrieval: bool = False
    messages: list[dict[str, str]] = field(default_factory=list)
    processed: list[int] = field(default_factory=list)
    state: dict[str, Tensor] = field(default_factory=dict)
    written_total: int = 0
    turns: list[TurnStats] = field(default_factory=list)
    read_upto: int = 0               # messages before this index have been read (and written) by a forward
    window_start: int | None = None  # the first non-system message of the last prompt, to tell when the window moves

    def clear(self) -> None:
        """Forget the conversation and the memory."""
        self.messages.clear()
        self.processed.clear()
        self.state = {}
        self.written_total = 0
        self.turns.clear()
        self.read_upto = 0
        self.window_start = None

    def snapshot(self) -> LaneSnapshot:
        """Everything `restore` needs to bring the lane back (states are replaced, never changed in place)."""
        return LaneSnapshot(tuple(self.messages), tuple(self.processed), dict(self.state), self.written_total,
                            len(self.turns), self.read_upto, self.window_start)

    def restore(self, snapshot: LaneSnapshot) -> None:
        self.messages, self.processed = list(snapshot.messages), list(snapshot.processed)
        self.state, self.written_total = dict(snapshot.state), snapshot.written_total
        del self.turns[snapshot.turns:]
        self.read_upto, self.window_start = snapshot.read_upto, snapshot.window_start


@dataclass
class LaneGroup:
    """Lanes decoded together in one batch: one KV cache, right-aligned rows, a 2D mask with the padding holes.

    While a checkpoint is open (`mark`), a crop below what the cache held at the checkpoint keeps the keys and values
    it cuts off (`stash`), so that `rollback` can put the cache back exactly as it was instead of re-reading it.
    """

    lanes: list[Lane]
    cache: Any = None
    mask: Tensor | None = None       # [B, L] long, 1 = a real token in the cache
    epoch: int = 0                   # bumped whenever the cache is dropped, so stale checkpoints can tell
    mark: int | None = None          # cache length at the open checkpoint
    intact: int = 0                  # columns before this still hold what they held at the checkpoint
    stash: list[tuple[Tensor, Tensor]] | None = None   # per layer: keys and values of columns [intact, mark)

    def drop_cache(self) -> None:
        self.cache = None
        self.mask = None
        self.epoch += 1
        self.mark, self.stash = None, None

    def positions(self) -> Tensor:
        """How many real tokens each row holds: the next position id of each row."""
        if self.mask is None:
            return torch.zeros(len(self.lanes), dtype=torch.long)
        return self.mask.sum(dim=1)

    @property
    def length(self) -> int:
        """Columns in the cache (real tokens and padding holes)."""
        return 0 if self.mask is None else self.mask.shape[1]

    def open_mark(self) -> None:
        """A checkpoint is taken: remember the cache length, nothing cut off yet."""
        self.mark = self.intact = self.length
        self.stash = None

    def crop(self, length: int) -> None:
        """Shorten the cache to its first `length` columns, keeping what an open checkpoint will need back."""
        if self.cache is None or length >= self.length:
            return
        if self.mark is not None and length < self.intact:
            cut = [(layer.keys[:, :, length:self.intact].clone(), layer.values[:, :, length:self.intact].clone())
                   for layer in self.cache.layers]
            if self.stash is not None:
                cut = [(torch.cat([k, sk], dim=-2), torch.cat([v, sv], dim=-2))
                       for (k, v), (sk, sv) in zip(cut, self.stash)]
            self.stash, self.intact = cut, length
        crop_cache(self.cache, length)
        self.mask = self.mask[:, :length]

    def return_to_mark(self, mask: Tensor) -> None:
        """Put the cache back as it was when the mark was opened (with `mask`, its mask then), and close the mark."""
        if self.stash is None:
            crop_cache(self.cache, self.mark)
        else:
            crop_cache(self.cache, self.intact)
            for index, (keys, values) in enumerate(self.stash):
                self.cache.update(keys, values, index)
        self.mask = mask
        self.mark, self.stash = None, None
