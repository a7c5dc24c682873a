"""Decode steps of several conversations in one forward: while turns of different engines decode at once, one
scheduler thread runs each step of all of them as one batch (rows of one model, as an engine's lanes already are).

A turn prefills as it always does (holding the model's lock), then joins the scheduler for its decode and lets the
lock go, so other turns can prefill meanwhile. The scheduler keeps the members' KV caches joined in one cache: each
member's rows left-padded (mask 0 columns) to the longest, concatenated along the batch, as text-generation-inference
concatenates its batches. The joined cache stays while the members stay; it is rebuilt only when a member joins
(padded to the new longest and concatenated) or leaves (its rows taken out with their own length, the rest filtered
and trimmed of columns no row needs). Each step takes the lock, puts the members' memory states, counters and row
switches into the model (concatenated the same way), runs one forward over the rows whose turn has a token ready,
and hands each member its rows' logits and memory back. Sampling stays with each turn, per lane, with its own
generator; a padding column is masked out, so every row's tokens are those it would get alone.

Members of different models never share a step, and a member whose join would pass the device's free memory
decodes in a batch of its own (one after the other with the others). A member's cancel is its own: it leaves, the
others go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from deltamem.compat import output_cache
from deltamem.kv_cache import new_cache
from deltamem.model import DeltaMemModel
from deltamem.runtime.lanes import LaneGroup
from deltamem.runtime.loading import free_memory
from deltamem.runtime.prefill import lanes_forward

#: How long a step waits for a member still busy with its last token before it runs without that member's rows.
PATIENCE_S = 0.05


class ModelLock(Protocol):
    """The lock every use of the shared model holds (the server's turn queue)."""

    def held(self) -> AbstractContextManager[None]:
        """Hold the model for a block."""
        ...

    def released(self) -> AbstractContextManager[None]:
        """Inside `held`: let others use the model for a block, then hold it again."""
        ...


@dataclass
class RowState:
    """The model's per-row memory of one member: its states (`DeltaMemModel.get_state` layout), counters and which
    rows have memory."""

    states: dict[str, Tensor]
    written: list[int]
    memory: list[bool]

    def put(self, model: DeltaMemModel, writes: list[bool]) -> None:
        """Make these the model's rows."""
        if self.states:
            model.set_state(self.states)
        else:
            model.reset()
        model.set_tokens_written(self.written)
        model.set_rows(memory=self.memory, writes=writes)


@dataclass(eq=False)
class _Member:
    """One turn's group while it decodes through the scheduler."""

    model: DeltaMemModel
    cache_kw: str
    pad_id: int
    rows: RowState
    writes: Callable[[list[int]], list[bool]]
    cache: Any                                 # its own cache and mask: before it joins and after it leaves
    mask: Tensor | None
    offset: int = 0                            # in the batch: the columns of left padding before its rows
    parts: list[list[int]] | None = None      # the next step's tokens, one list per row (empty: nothing this step)
    logits: Tensor | None = None
    error: BaseException | None = None
    leaving: bool = False
    left: bool = False

    @property
    def size(self) -> int:
        return len(self.rows.memory)



@dataclass(eq=False)
class _Batch:
    """Members decoding in one forward: their caches joined (right-aligned rows, left padding), in member order."""

    members: list[_Member] = field(default_factory=list)
    cache: Any = None
    mask: Tensor | None = None

    @property
    def key(self) -> tuple[int, str]:
        return id(self.members[0].model), self.members[0].cache_kw


class CrossBatch:
    """The decode scheduler of one process: engines given it (`ABEngine(decoder=…)`) decode through it."""

    def __init__(self, lock: ModelLock, *, patience_s: float = PATIENCE_S,
                 free_bytes: Callable[[torch.device], int | None] = free_memory) -> None:
        self.lock = lock
        self.patience_s = patience_s
        self.free_bytes = free_bytes
        self.steps = 0                       # forwards run
        self.joined_steps = 0                # of which held rows of more than one member
        self._changed = threading.Condition()
        self._joining: list[_Member] = []
        self._batches: list[_Batch] = []
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------ a turn's side
    @contextmanager
    def decoding(self, model: DeltaMemModel, group: LaneGroup, cache_kw: str, pad: int,
                 writes: Callable[[list[int]], list[bool]]) -> Iterator[Callable[[list[list[int]]], Tensor]]:
        """Called holding the lock, with the group prefilled and its rows in the model: the block decodes without
        the lock, its steps (`step(parts)` → each row's last logits) run by the scheduler; afterwards the lock is
        held again and the group's cache and the model's rows are the group's, as if it had decoded alone."""
        if group.cache is None or group.mask is None:
            raise RuntimeError("a group joins the decode with its prompt read: it has no cache")
        rows = RowState(model.get_state(), model.tokens_written or [lane.written_total for lane in group.lanes],
                        [lane.memory for lane in group.lanes])
        member = _Member(model, cache_kw, pad, rows, writes, group.cache, group.mask)
        group.cache = group.mask = None
        try:
            with self.lock.released():
                with self._changed:
                    self._joining.append(member)
                    self._start()
                    self._changed.notify_all()
                try:
                    yield lambda parts: self._step(member, parts)
                finally:
                    with self._changed:
                        member.leaving = True
                        self._changed.notify_all()
                        while not member.left and member.error is None:
                            self._changed.wait()
        finally:
            if member.cache is None:
                group.drop_cache()
                for lane in group.lanes:
                    lane.processed = []
            else:
                group.cache, group.mask = member.cache, member.mask
            member.rows.put(model, member.writes(member.rows.written))

    def _step(self, member: _Member, parts: list[list[int]]) -> Tensor:
        with self._changed:
            member.parts, member.logits = parts, None
            self._changed.notify_all()
            while member.logits is None and member.error is None:
                self._changed.wait()
            if member.error is not None:
                raise member.error
            logits, member.logits = member.logits, None
            return logits

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="cross-batch decode", daemon=True)
            self._thread.start()

    # -------------------------------------------------------------------------------- the scheduler's side
    def _loop(self) -> None:
        while True:
            with self._changed:
                ready = self._wait_for_work()
                if ready is None:
                    self._thread = None
                    return
                joining, self._joining = self._joining, []
                leaving = [m for b in self._batches for m in b.members if m.leaving]
            for member in leaving:
                self._leave(member)
            for member in joining:
                try:
                    self._join(member)
                except Exception as exc:  # noqa: BLE001 - the turn that joined is told
                    with self._changed:
                        member.error = exc

            with self._changed:
                for member in leaving:
                    member.left = True
                self._changed.notify_all()
            if ready:
                self._run(ready)

    def _wait_for_work(self) -> list[_Member] | None:
        """Under the condition: the members whose next step is ready, once every member has one or the patience ran
        out; an empty list when only joins and leaves wait; None when nothing is left to do."""
        since: float | None = None
        while True:
            members = [m for b in self._batches for m in b.members]
            if not members and not self._joining:
                return None
            if self._joining or any(m.leaving for m in members):
                return [m for m in members if m.parts is not None and not m.leaving]
            ready = [m for m in members if m.parts is not None]
            if ready and (len(ready) == len(members) or
                          (since is not None and time.perf_counter() - since >= self.patience_s)):
                return ready
            if ready and since is None:
                since = time.perf_counter()
            self._changed.wait(self.patience_s if ready else None)

    def _join(self, member: _Member) -> None:
        """Add the member to a batch of its model whose joined cache still fits the free memory, else to one of its
        own."""
        for batch in self._batches:
            if batch.key == (id(member.model), member.cache_kw) and self._fits(batch, member):
                self._rebuild(batch, [*batch.members, member], new=member)
                return
        batch = _Batch()
        self._batches.append(batch)
        self._rebuild(batch, [member], new=member)

    def _fits(self, batch: _Batch, member: _Member) -> bool:
        """Whether the joined cache (and the copy a join makes of it) fit the device's free memory."""
        free = self.free_bytes(member.model.device)
        if free is None:
            return True
        assert member.mask is not None
        length = max(batch.mask.shape[1] if batch.mask is not None else 0, member.mask.shape[1])
        rows = sum(m.size for m in batch.members) + member.size
        per_cell = sum(layer.keys[:1, :, :1].numel() * layer.keys.element_size() * 2 for layer in member.cache.layers)
        return 2 * rows * length * per_cell <= free

    def _leave(self, member: _Member) -> None:
        """Take the member's rows out of its batch with its own length; the rest is filtered and trimmed."""
        batch = next(b for b in self._batches if member in b.members)
        rows = self._rows(batch, member)
        assert batch.mask is not None
        cut = member.offset
        rest = [m for m in batch.members if m is not member]
        if not rest and cut == 0:
            member.cache, member.mask = batch.cache, batch.mask     # the last one out takes the cache as it is
        else:
            member.cache = _cache_of(member.model, [(k[rows, :, cut:], v[rows, :, cut:])
                                                    for k, v in _layers(batch.cache)])
            member.mask = batch.mask[rows, cut:]
        if rest:
            self._rebuild(batch, rest)
        else:
            self._batches.remove(batch)

    @staticmethod
    def _rows(batch: _Batch, member: _Member) -> slice:
        start = 0
        for other in batch.members:
            if other is member:
                return slice(start, start + member.size)
            start += other.size
        raise ValueError("the member is not in this batch")

    def _rebuild(self, batch: _Batch, members: list[_Member], new: _Member | None = None) -> None:
        """Join the members' caches anew: each (the batch's part, or a new member's own cache) left-padded to the
        longest member, concatenated along the batch (a member alone keeps its cache as it is)."""
        if members == [new]:
            batch.cache, batch.mask, batch.members = new.cache, new.mask, members
            new.cache, new.mask, new.offset = None, None, 0
            return
        parts: list[tuple[list[tuple[Tensor, Tensor]], Tensor]] = []
        for member in members:
            if member is new:
                assert member.mask is not None
                parts.append((_layers(member.cache), member.mask))
                member.cache = member.mask = None         # the batch holds them now
            else:
                rows, cut = self._rows(batch, member), member.offset
                parts.append(([(k[rows, :, cut:], v[rows, :, cut:]) for k, v in _layers(batch.cache)],
                              batch.mask[rows, cut:]))
        length = max(mask.shape[1] for _, mask in parts)
        for member, (_, own) in zip(members, parts):
            member.offset = length - own.shape[1]
        layers = [(torch.cat([_left_pad(layers[i][0], length) for layers, _ in parts]),
                   torch.cat([_left_pad(layers[i][1], length) for layers, _ in parts]))
                  for i in range(len(parts[0][0]))]
        mask = torch.cat([torch.nn.functional.pad(m, (length - m.shape[1], 0)) for _, m in parts])
        batch.cache = _cache_of(members[0].model, layers)
        batch.mask, batch.members = mask, members

    def _run(self, ready: list[_Member]) -> None:
        """One forward per batch holding ready members, under the lock; results and failures handed over."""
        with self.lock.held():
            for batch in list(self._batches):
                if any(m in ready for m in batch.members):
                    try:
                        self._forward(batch, [m for m in batch.members if m in ready])
                    except Exception as exc:  # noqa: BLE001 - every member of the failed step is told
                        self._fail(batch, exc)
        with self._changed:
            self._changed.notify_all()

    @torch.no_grad()
    def _forward(self, batch: _Batch, ready: list[_Member]) -> None:
        members = batch.members
        model = members[0].model
        assert batch.mask is not None
        width = batch.mask.shape[0]
        ids = torch.full((width, 1), members[0].pad_id, dtype=torch.long)
        chunk_mask = torch.zeros(width, 1, dtype=torch.long)
        row = 0
        for member in members:
            for part in member.parts if member in ready and member.parts is not None else [[]] * member.size:
                if part:
                    ids[row, 0], chunk_mask[row, 0] = part[0], 1
                row += 1
        positions = (batch.mask.sum(dim=1, keepdim=True) + chunk_mask - 1).clamp(min=0)
        mask = torch.cat([batch.mask, chunk_mask], dim=1)
        _joined_rows(members).put(model, [w for m in members for w in m.writes(m.rows.written)])
        device = model.device
        out = lanes_forward(model, input_ids=ids.to(device), attention_mask=mask.to(device),
                            position_ids=positions.to(device), cache_kw=members[0].cache_kw, cache=batch.cache)
        batch.cache, batch.mask = output_cache(out), mask
        states, written = model.get_state(), model.tokens_written
        model.set_rows()
        self.steps += 1
        self.joined_steps += len(ready) > 1
        start = 0
        with self._changed:
            for member in members:
                rows = slice(start, start + member.size)
                member.rows.states = {name: s[rows].clone() for name, s in states.items()}
                member.rows.written = written[rows]
                if member in ready:
                    member.logits, member.parts = out.logits[rows, -1], None
                start += member.size

    def _fail(self, batch: _Batch, exc: Exception) -> None:
        """A failed step ends its batch: every member gets the error, and its cache is gone."""
        with self._changed:
            for member in batch.members:
                member.error, member.cache, member.parts = exc, None, None
                member.left = member.leaving
            self._batches.remove(batch)
            self._changed.notify_all()


def _joined_rows(members: list[_Member]) -> RowState:
    """The members' rows as one: states concatenated (zeros for a member with none yet), counters, switches."""
    template = next((m.rows.states for m in members if m.rows.states), {})
    states = {name: torch.cat([m.rows.states.get(name, t.new_zeros(m.size, *t.shape[1:])) for m in members])
              for name, t in template.items()}
    return RowState(states, [n for m in members for n in m.rows.written],
                    [flag for m in members for flag in m.rows.memory])


def _layers(cache: Any) -> list[tuple[Tensor, Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(tensor: Tensor, length: int) -> Tensor:
    """Keys or values [B, H, L, D] with zero columns in front up to `length`."""
    missing = length - tensor.shape[2]
    return tensor if missing == 0 else torch.nn.functional.pad(tensor, (0, 0, missing, 0))


def _cache_of(model: DeltaMemModel, layers: list[tuple[Tensor, Tensor]]) -> Any:
    """A fresh cache of the engine's kind holding these keys and values."""
    cache = new_cache(model)
    for index, (keys, values) in enumerate(layers):
        cache.update(keys.contiguous(), values.contiguous(), index)
    return cache
