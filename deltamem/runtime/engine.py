"""The A/B engine: both lanes answer the same message, token by token, on one set of weights.

Each turn: render each lane's prompt under the context policy, feed what the lane's KV cache does not hold yet
(writing it into memory: every token is written once, when first processed), then decode. Lanes run in one
batched forward (row per lane, memory off for the frozen row) or one after the other; in float32 both give the
same tokens.

When the new prompt does not extend what a cache holds (a chat template that rewrites earlier turns, a reply that
does not re-tokenise to the generated ids, a window that slid), the cache is cut back to the longest common prefix
of the two and the rest is fed: the part that renders messages read before with writes off, only what was never
read with writes on. So every token is written once and a turn re-reads no more than what changed.

A retrieval lane (`rag`, `delta+rag`) also gets, when a turn answers, the messages its window dropped that BM25
ranks highest for the latest user message (`deltamem.retrieval`), as one block right after the messages read
before: the cache of those stays a prefix, and the block counts as read, so a memory lane re-reads it with writes
off and writes nothing twice. Under `full` nothing is dropped and such a lane reads what the others read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from deltamem.compat import cache_argument, output_cache
from deltamem.context import ContextPolicy, WriteBudget
from deltamem.kv_cache import new_cache, reserve
from deltamem.model import DeltaMemModel
from deltamem.rendering import ChatRenderer, common_prefix
from deltamem.retrieval import MessageIndex, RetrievalSettings, block_line, block_message, dates_of, fit_block, undated
from deltamem.runtime.contract import (
    LANE_NAMES,
    Event,
    GenerationSettings,
    LaneDone,
    LaneView,
    ReadProgress,
    SessionIdentity,
    TokenEvent,
    TurnDone,
    TurnStats,
    has_memory,
    has_retrieval,
)
from deltamem.runtime.lanes import Lane, LaneGroup, LaneSnapshot
from deltamem.runtime.long_inputs import LongRead, PromptTooLong, check_fits, cut_message, read_into_memory
from deltamem.runtime.prefill import lanes_forward

if TYPE_CHECKING:
    from deltamem.runtime.cross_batch import CrossBatch


#: Positions kept for the template's closing after a reply (`<|im_end|>` and a newline in ChatML), fed once the
#: reply ends: part of what a turn reserves in its cache.
CLOSING_ROOM = 8


@dataclass(frozen=True)
class Checkpoint:
    """What `ABEngine.rollback` returns to: every lane's snapshot and each group's cache mask at the time."""

    lanes: dict[str, LaneSnapshot]
    groups: dict[tuple[str, ...], tuple[int, Tensor | None]]
    turn_index: int


@dataclass(frozen=True)
class _Plan:
    """One lane's prompt for a turn: cache tokens kept, tokens to re-read without writing, tokens to write."""

    ids: list[int]
    keep: int            # ids[:keep] are what the lane's cache already holds
    fresh: int           # ids[fresh:] were never read: written; ids[keep:fresh] are re-read with writes off
    rebuilt: bool        # the window moved or the cache was gone
    window_start: int | None


@dataclass(frozen=True)
class _Prompt:
    """One lane's messages for a turn as its prompt shows them, and how many of the first were read before (the
    retrieved block, re-read each time and never written, counts as read)."""

    messages: list[dict[str, str]]
    read: int
    retrieved: list[dict[str, Any]]


@dataclass
class _Reply:
    """One lane's reply while it is being generated."""

    stats: TurnStats
    tokens: list[int] = field(default_factory=list)
    fed: int = 0                     # generated tokens already in the cache (the last one may not be)
    long_written: int = 0            # tokens of a long message written into memory in chunks before the prompt
    text: str = ""
    finished: bool = False
    first: float | None = None
    last: float = 0.0


class ABEngine:
    """Runs the lanes of one A/B conversation on a δ-mem model in this process (the `Engine` contract)."""

    def __init__(self, model: DeltaMemModel, tokenizer, *, policy: ContextPolicy | None = None,
                 budget: WriteBudget | None = None, batched: bool = True, system_prompt: str | None = None,
                 lanes: Sequence[str] = LANE_NAMES, retrieval: RetrievalSettings | None = None,
                 decoder: CrossBatch | None = None) -> None:
        self.model = model
        self.decoder = decoder            # decode steps shared with other engines' turns (None: this turn's own)
        self.tokenizer = tokenizer
        self.policy = policy or ContextPolicy()
        self.budget = budget or WriteBudget()
        self.batched = batched
        self.system_prompt = system_prompt
        self.retrieval = retrieval or RetrievalSettings()
        self.lanes = {name: Lane(name, memory=has_memory(name), retrieval=has_retrieval(name)) for name in lanes}
        self._indexes = {name: MessageIndex() for name, lane in self.lanes.items() if lane.retrieval}
        self._groups: dict[tuple[str, ...], LaneGroup] = {}
        self._cache_kw = cache_argument(model)
        self._eos = _eos_ids(model, tokenizer)
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self._eos)
        self.renderer = ChatRenderer(tokenizer)
        self._cuts: dict[tuple[str, str, int], dict[str, str]] = {}
        self._positions = getattr(model.backbone.config, "max_position_embeddings", None) or 2**31
        self.turn_index = 0
        self.reset()

    # ----------------------------------------------------------------------------------- the contract
    @property
    def lane_names(self) -> tuple[str, ...]:
        return tuple(self.lanes)

    def lane(self, name: str) -> LaneView:
        lane = self.lanes[name]
        return LaneView(name, lane.memory, tuple(dict(m) for m in lane.messages), lane.written_total, lane.retrieval)

    def save(self, folder: Path, identity: SessionIdentity, extra: dict[str, Any] | None = None) -> Path:
        from deltamem.runtime.session_io import save_session

        return save_session(self, folder, identity, extra)

    def load(self, folder: Path, identity: SessionIdentity) -> dict[str, Any]:
        from deltamem.runtime.session_io import load_session

        return load_session(self, folder, identity)

    # ----------------------------------------------------------------------------------- conversation
    def reset(self) -> None:
        """Forget every lane's conversation, cache and memory."""
        for lane in self.lanes.values():
            lane.clear()
            if self.system_prompt:
                lane.messages.append({"role": "system", "content": self.system_prompt})
        self._groups.clear()
        self.turn_index = 0

    def reset_memory(self) -> None:
        """Empty the δ-mem lane's memory and counters, keeping the conversation (and the caches)."""
        for lane in self.lanes.values():
            lane.state = {}
            lane.written_total = 0

    def add_message(self, role: str, content: str, lanes: Sequence[str] | None = None) -> None:
        """Append a recorded message without generating (teacher forcing); it is read at the next turn."""
        for name in lanes or self.lanes:
            self.lanes[name].messages.append({"role": role, "content": content})

    def set_policy(self, policy: ContextPolicy) -> None:
        """Switch the context policy; the next turn rebuilds what no longer matches (read-only)."""
        self.policy = policy

    def turn(self, user_text: str, settings: GenerationSettings | None = None, *,
             lanes: Sequence[str] | None = None, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Send `user_text` to the lanes and stream their replies as events; ends with `TurnDone`."""
        names = list(lanes or self.lanes)
        self.add_message("user", user_text, names)
        try:
            yield from self.respond(settings, lanes=names, cancel=cancel)
        except PromptTooLong:
            for name in names:       # refused before any forward: the message never happened
                self.lanes[name].messages.pop()
            raise

    def respond(self, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
                cancel: threading.Event | None = None) -> Iterator[Event]:
        """Generate each lane's reply to its conversation as it stands."""
        yield from self._run(settings or GenerationSettings(), lanes, cancel, generate=True)

    def ingest(self, lanes: Sequence[str] | None = None) -> TurnDone:
        """Read (and write into memory) the messages no forward has read yet, without generating."""
        *_, done = self.read(lanes)
        return done

    def read(self, lanes: Sequence[str] | None = None, cancel: threading.Event | None = None) -> Iterator[Event]:
        """`ingest`, streaming `ReadProgress` while a message longer than the window is read into memory (a cancel
        stops it between chunks); ends with `TurnDone`."""
        yield from self._run(GenerationSettings(max_new_tokens=0), lanes, cancel, generate=False)

    def _run(self, settings: GenerationSettings, lanes: Sequence[str] | None, cancel: threading.Event | None,
             generate: bool) -> Iterator[Event]:
        names = list(lanes or self.lanes)
        groups = [tuple(names)] if self.batched else [(name,) for name in names]
        done = TurnDone()
        start = time.perf_counter()
        for key in groups:
            group = self._group(key)
            for event in self._run_group(group, settings, cancel, start, generate):
                if isinstance(event, LaneDone):
                    done.stats[event.lane] = event.stats
                yield event
            done.diagnostics.update(self._diagnostics(group))
        done.written_total = {name: self.lanes[name].written_total for name in names}
        if generate:
            self.turn_index += 1
        yield done

    def _diagnostics(self, group: LaneGroup) -> dict[str, dict[str, float]]:
        """The memory lanes' diagnostics after the group's turn: the model's rows are the group's lanes, in order."""
        values = self.model.diagnostics()
        return {lane.name: {key: float(rows[row]) for key, rows in values.items() if row < len(rows)}
                for row, lane in enumerate(group.lanes) if lane.memory}

    def _group(self, key: tuple[str, ...]) -> LaneGroup:
        """The group for these lanes; any other group holding one of them loses its cache, which is now stale."""
        for other_key, other in self._groups.items():
            if other_key != key and set(other_key) & set(key):
                other.drop_cache()
        return self._groups.setdefault(key, LaneGroup([self.lanes[n] for n in key]))

    # ---------------------------------------------------------------------------------------- prompts
    def _window(self, lanes: Sequence[Lane]) -> list[list[int]]:
        """The message indices each lane puts in its prompt; lanes of equal length share one window."""
        length = self.renderer.length
        if len({len(lane.messages) for lane in lanes}) == 1:
            n = len(lanes[0].messages)
            lengths = [max(length(lane.messages[i]) for lane in lanes) for i in range(n)]
            chosen = self.policy.select(lengths, [m["role"] for m in lanes[0].messages])
            return [chosen for _ in lanes]
        return [self.policy.select([length(m) for m in lane.messages], [m["role"] for m in lane.messages])
                for lane in lanes]

    def _allowance(self, lane: Lane) -> int | None:
        """The most tokens a window gives one message: the window less the leading system messages (None: full)."""
        if self.policy.tokens is None:
            return None
        head = 0
        for message in lane.messages:
            if message["role"] != "system":
                break
            head += self.renderer.length(message)
        return self.policy.tokens - head

    def _view(self, lane: Lane, indices: list[int]) -> list[dict[str, str]]:
        """The lane's messages at `indices` as the prompt shows them: one longer than the window gives it is cut to
        its tail (after `CUT_MARKER`), the same way for every lane."""
        allowed = self._allowance(lane)
        shown = []
        for i in indices:
            message = lane.messages[i]
            if allowed is not None and message["role"] != "system" and self.renderer.length(message) > allowed:
                key = (message["role"], message["content"], allowed)
                if key not in self._cuts:
                    self._cuts[key] = cut_message(self.renderer, message, allowed)
                message = self._cuts[key]
            shown.append(message)
        return shown

    def _long_unread(self, lane: Lane) -> list[int] | None:
        """The tokens of the lane's first unread message when the window cannot hold it (it is read in chunks)."""
        allowed = self._allowance(lane)
        if allowed is None or lane.read_upto >= len(lane.messages):
            return None
        message = lane.messages[lane.read_upto]
        if message["role"] == "system" or self.renderer.length(message) <= allowed:
            return None
        return self.renderer.ids([message])

    def _read_long(self, lanes: Sequence[Lane], replies: list[_Reply], cancel: threading.Event | None
                   ) -> Iterator[ReadProgress]:
        """Read each memory lane's unread long message into its memory, chunk by chunk (the frozen lane has nothing
        to write); the message then counts as read, whatever a cancel left unread of it."""
        for lane, reply in zip(lanes, replies):
            ids = self._long_unread(lane)
            if ids is None:
                continue
            if lane.memory:
                result = None
                span = min(self._allowance(lane), self._positions)
                for item in read_into_memory(self.model, ids, span, state=lane.state, written=lane.written_total,
                                             allows_writes=self.budget.allows_writes, cancel=cancel, lane=lane.name):
                    if isinstance(item, LongRead):
                        result = item
                    else:
                        yield item
                lane.state = self.model.get_state()
                written = self.model.tokens_written[0] - lane.written_total
                lane.written_total += written
                reply.long_written = written
                reply.stats.long_read, reply.stats.long_total = result.done, result.total
            lane.read_upto += 1

    def _retrieve(self, lane: Lane, indices: list[int]) -> list[dict[str, Any]]:
        """The messages the window dropped that BM25 ranks highest for the latest user message, as many as fit the
        retrieval budget, in the conversation's order (none under `full`: nothing is dropped)."""
        starts = [i for i in indices if lane.messages[i]["role"] != "system"]
        if self.policy.tokens is None or not starts:
            return []
        dropped = [i for i in range(starts[0]) if lane.messages[i]["role"] != "system"]
        query = next((m["content"] for m in reversed(lane.messages) if m["role"] == "user"), "")
        ranked = self._indexes[lane.name].search([undated(lane.messages[i]["content"]) for i in dropped],
                                                 undated(query), self.retrieval.k)
        dates = dates_of([m["content"] for m in lane.messages])
        lines = {dropped[r]: block_line(lane.messages[dropped[r]]["role"], lane.messages[dropped[r]]["content"],
                                        dates[dropped[r]]) for r in ranked}
        chosen = fit_block([dropped[r] for r in ranked], lines, self.renderer.length,
                           self.retrieval.budget(self.policy.tokens))
        return [{"index": i, "role": lane.messages[i]["role"], "content": lane.messages[i]["content"],
                 "line": lines[i]} for i in chosen]

    def _prompt(self, lane: Lane, indices: list[int], generate: bool) -> _Prompt:
        """The lane's prompt messages; a retrieval lane's retrieved block (when a turn answers and something was
        retrieved) sits right after the messages read before, so that the cache of those stays a prefix."""
        messages = self._view(lane, indices)
        read = sum(1 for i in indices if i < lane.read_upto)
        retrieved = self._retrieve(lane, indices) if lane.retrieval and generate else []
        if not retrieved:
            return _Prompt(messages, read, [])
        messages.insert(read, block_message([r["line"] for r in retrieved]))
        return _Prompt(messages, read + 1, retrieved)

    def _plan(self, lane: Lane, indices: list[int], prompt: _Prompt, generate: bool, cached: bool) -> _Plan:
        """The lane's prompt, and how much of it the cache holds, must be re-read, or is new.

        Where the prompt extends what the cache holds, everything past the cache is new. Otherwise the cache keeps
        the longest common prefix of the two (never past the messages read before), the rest of those messages'
        tokens is re-read with writes off (they were written when first read) and what was never read is written.
        """
        messages = prompt.messages
        ids = self.renderer.ids(messages, generate)
        processed = lane.processed if cached else []
        keep = common_prefix(processed, ids)
        starts = [i for i in indices if lane.messages[i]["role"] != "system"]
        window_start = starts[0] if starts else None
        moved = lane.window_start is not None and window_start != lane.window_start
        rebuilt = lane.read_upto > 0 and (not cached or moved)
        if keep == len(processed) and processed and not prompt.retrieved:
            return _Plan(ids, keep, keep, rebuilt, window_start)
        # A cached prefix that runs into never-read messages (a slid window whose new first message starts like the
        # old one) is cut back too: those tokens are new here and must be written. A retrieved block counts as read:
        # it is re-read with writes off.
        fresh = self.renderer.read_part(messages, prompt.read, generate)
        return _Plan(ids, min(keep, fresh), fresh, rebuilt, window_start)

    # ---------------------------------------------------------------------------------------- running
    def _run_group(self, group: LaneGroup, settings: GenerationSettings, cancel: threading.Event | None,
                   start: float, generate: bool) -> Iterator[Event]:
        lanes = group.lanes
        windows = self._window(lanes)
        prompts = [self._prompt(lane, w, generate) for lane, w in zip(lanes, windows)]
        longest = max(len(self.renderer.ids(prompt.messages, generate)) for prompt in prompts)
        check_fits(self.model, longest, settings.max_new_tokens if generate else 0, len(lanes))
        replies = [_Reply(TurnStats(retrieved=[{k: r[k] for k in ("index", "role", "content")}
                                               for r in prompt.retrieved])) for prompt in prompts]
        yield from self._read_long(lanes, replies, cancel)
        # A long message read into memory now counts as read: where the prompts' read part ends has moved.
        prompts = [self._prompt(lane, w, generate) for lane, w in zip(lanes, windows)]
        stopped = cancel is not None and cancel.is_set() and any(
            r.stats.long_read < r.stats.long_total for r in replies)
        plans = [self._plan(lane, w, prompt, generate, group.cache is not None)
                 for lane, w, prompt in zip(lanes, windows, prompts)]
        for reply, plan in zip(replies, plans):
            reply.stats.rebuilt, reply.stats.window_start = plan.rebuilt, plan.window_start
        generate = generate and not stopped
        self._load_lanes(lanes)
        try:
            kept = self._crop(group, [plan.keep for plan in plans])
            for lane, plan, held, reply in zip(lanes, plans, kept, replies):
                lane.read_upto, lane.window_start = len(lane.messages), plan.window_start
                reply.stats.reread = plan.fresh - held
            rereads = [plan.ids[held:plan.fresh] for plan, held in zip(plans, kept)]
            news = [plan.ids[plan.fresh:] for plan in plans]
            self._reserve(group, (rereads, news), settings.max_new_tokens + CLOSING_ROOM if generate else 0)
            reread = self._feed(group, rereads, write=False)
            logits = self._feed(group, news, write=True)
            if generate:
                yield from self._decode(group, _last_logits(logits, reread), settings, cancel, replies)
                self._close_replies(group, prompts, replies)
        finally:
            # Runs on success, on cancel and when the consumer stops listening: the lanes always end consistent.
            self._finish(lanes, replies, start, cancelled=cancel is not None and cancel.is_set(), generated=generate)
        for reply in replies:
            reply.stats.written += reply.long_written
        for lane, reply in zip(lanes, replies):
            yield LaneDone(lane.name, reply.text, reply.stats)

    def _crop(self, group: LaneGroup, keeps: list[int]) -> list[int]:
        """Cut the group's cache back so that no row keeps more than `keeps[row]` of its tokens.

        Rows are right-aligned with padding holes, so the cache is cut at one column for all rows: the earliest
        column any row needs cut. Returns how many tokens each row still holds (at most its `keeps`).
        """
        if group.cache is None or group.mask is None:
            for lane in group.lanes:
                lane.processed = []
            return [0] * len(keeps)
        column = group.length
        for row, keep in enumerate(keeps):
            real = group.mask[row].nonzero().flatten()
            if keep < len(real):
                column = min(column, int(real[keep - 1]) + 1 if keep else 0)
        if column == 0 and group.mark is None:
            group.drop_cache()
        else:
            group.crop(column)
        kept = [0] * len(keeps) if group.mask is None else [int(n) for n in group.mask.sum(dim=1)]
        for lane, held in zip(group.lanes, kept):
            del lane.processed[held:]
        return kept

    def _close_replies(self, group: LaneGroup, prompts: list[_Prompt], replies: list[_Reply]) -> None:
        """Feed, written, the reply's last token if the length limit or a cancel left it unfed, and what closes the
        reply in the template (`<|im_end|>` and the newline in ChatML).

        The model stopped before the closing (EOS is never fed), so it is new; afterwards each cache holds the reply
        as the template prints it. Where the template prints the reply otherwise once it is history (or the text
        does not re-tokenise to the generated ids), the next turn cuts the cache back to where the two part.
        """
        parts = []
        for prompt, reply in zip(prompts, replies):
            reply.text = self.tokenizer.decode(reply.tokens, skip_special_tokens=True)
            messages = prompt.messages + [{"role": "assistant", "content": reply.text}]
            parts.append(reply.tokens[reply.fed:] + self.renderer.closing(messages))
        self._feed(group, parts, write=True)

    def _finish(self, lanes: Sequence[Lane], replies: list[_Reply], start: float, cancelled: bool,
                generated: bool) -> None:
        """Store each lane's reply (if one was generated), memory and counters, whatever ended the turn."""
        states = self.model.get_state()
        counts = self.model.tokens_written or [lane.written_total for lane in lanes]
        for row, (lane, reply) in enumerate(zip(lanes, replies)):
            if generated:
                reply.text = self.tokenizer.decode(reply.tokens, skip_special_tokens=True)
                lane.messages.append({"role": "assistant", "content": reply.text})
                lane.read_upto = len(lane.messages)
            if lane.memory:
                lane.state = {name: s[row:row + 1].clone() for name, s in states.items()}
            stats = reply.stats
            stats.written = counts[row] - lane.written_total
            lane.written_total = counts[row]
            stats.tokens = len(reply.tokens)
            stats.cancelled = cancelled and not reply.finished
            stats.seconds = time.perf_counter() - start
            if reply.first is not None:
                stats.ttft_s = reply.first - start
                if stats.tokens > 1 and reply.last > reply.first:
                    stats.tokens_per_s = (stats.tokens - 1) / (reply.last - reply.first)
            lane.turns.append(stats)
        self.model.set_rows()

    def _load_lanes(self, lanes: Sequence[Lane]) -> None:
        """Put the lanes' memory states and counters into the model's rows."""
        model = self.model
        rows: list[dict[str, Tensor]] = []
        for lane in lanes:
            rows.append(lane.state if lane.state else {})
        if any(rows):
            template = next(r for r in rows if r)
            merged = {name: torch.cat([r.get(name, torch.zeros_like(t)) for r in rows]) for name, t in template.items()}
            model.set_state(merged)
        else:
            model.reset()
        model.set_tokens_written([lane.written_total for lane in lanes])
        model.set_rows(memory=[lane.memory for lane in lanes],
                       writes=[lane.memory and self.budget.allows_writes(lane.written_total) for lane in lanes])

    def _refresh_writes(self, lanes: Sequence[Lane]) -> None:
        """Apply the budget's stop policy between forwards."""
        counts = self.model.tokens_written or [0] * len(lanes)
        self.model.set_rows(memory=[lane.memory for lane in lanes], writes=self._writes(lanes, counts))

    def _writes(self, lanes: Sequence[Lane], counts: Sequence[int]) -> list[bool]:
        """Which rows may write, their lanes having written `counts` tokens: the budget's stop policy."""
        return [lane.memory and self.budget.allows_writes(c) for lane, c in zip(lanes, counts)]

    def _reserve(self, group: LaneGroup, feeds: Sequence[list[list[int]]], reply: int) -> None:
        """Make the group's cache if it has none, and size it for this turn once: the columns it holds, those the
        feeds add (each as wide as its longest row) and the reply's room. Every `_feed` of a turn comes after it."""
        if group.cache is None:
            group.cache = new_cache(self.model)
        columns = sum(max((len(part) for part in parts), default=0) for parts in feeds)
        reserve(group.cache, group.length + columns + reply)

    @torch.no_grad()
    def _feed(self, group: LaneGroup, parts: list[list[int]], write: bool) -> Tensor | None:
        """Append one chunk per row to the group's cache (rows right-aligned); return each row's last logits.

        Rows with an empty chunk get padding only: their logits are meaningless (`_last_logits` knows which).
        """
        width = max((len(p) for p in parts), default=0)
        if width == 0:
            return None
        device = self.model.device
        ids = torch.full((len(parts), width), self._pad, dtype=torch.long)
        chunk_mask = torch.zeros(len(parts), width, dtype=torch.long)
        for row, part in enumerate(parts):
            if part:
                ids[row, width - len(part):] = torch.tensor(part)
                chunk_mask[row, width - len(part):] = 1
        positions = group.positions().unsqueeze(1) + chunk_mask.cumsum(dim=1) - 1
        positions = positions.clamp(min=0)
        mask = chunk_mask if group.mask is None else torch.cat([group.mask, chunk_mask], dim=1)
        if write:
            self._refresh_writes(group.lanes)
        with nullcontext() if write else self.model.read_only():
            out = lanes_forward(self.model, input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device), cache_kw=self._cache_kw, cache=group.cache)
        group.cache = output_cache(out)
        group.mask = mask
        return _fed(group, parts, out.logits[:, -1])

    @contextmanager
    def _decode_steps(self, group: LaneGroup) -> Iterator[Callable[[list[list[int]]], Tensor | None]]:
        """How the decode feeds one token per row: into the group's cache here, or through the cross-session decoder
        (the same logits, the forward shared with other engines' turns)."""
        if self.decoder is None:
            yield lambda parts: self._feed(group, parts, write=True)
            return
        writes = partial(self._writes, group.lanes)
        with self.decoder.decoding(self.model, group, self._cache_kw, self._pad, writes) as step:
            yield lambda parts: _fed(group, parts, step(parts))

    def _decode(self, group: LaneGroup, logits: Tensor | None, settings: GenerationSettings,
                cancel: threading.Event | None, replies: list[_Reply]) -> Iterator[Event]:
        """Sample, stream and feed one token per unfinished lane until EOS, the length limit or a cancel."""
        lanes = group.lanes
        if logits is None or bool(torch.isnan(logits[:, 0]).any()):
            raise RuntimeError("the prompt holds nothing new to answer: every token of it was read before")
        generators = [_generator(settings.seed, self.turn_index, lane.name) for lane in lanes]
        shown = ["" for _ in lanes]
        with self._decode_steps(group) as feed:
            for step in range(settings.max_new_tokens):
                tokens = [-1 if reply.finished else _choose(logits[row], settings, generators[row])
                          for row, reply in enumerate(replies)]
                now = time.perf_counter()
                for row, (token, reply) in enumerate(zip(tokens, replies)):
                    if reply.finished:
                        continue
                    if settings.stop_at_eos and token in self._eos:
                        reply.finished = True
                        continue
                    reply.tokens.append(token)
                    reply.first = reply.first or now
                    reply.last = now
                    text = self.tokenizer.decode(reply.tokens, skip_special_tokens=True)
                    if not text.endswith("\ufffd"):
                        delta, shown[row] = text[len(shown[row]):], text
                        yield TokenEvent(lanes[row].name, delta, token)
                if all(r.finished for r in replies) or step == settings.max_new_tokens - 1:
                    for reply in replies:
                        reply.finished = True
                    break
                if cancel is not None and cancel.is_set():
                    break
                parts = [[] if r.finished else [t] for t, r in zip(tokens, replies)]
                logits = feed(parts)
                for reply, part in zip(replies, parts):
                    reply.fed += len(part)

    # --------------------------------------------------------------------------------------- rollback
    def checkpoint(self) -> Checkpoint:
        """A cheap snapshot (messages, memory, counters, cache lengths) to return to after a probe.

        One checkpoint is open at a time: until its `rollback`, a cache cut back below where it stood keeps what it
        cut off, so the rollback restores the cache exactly. Taking another checkpoint replaces the open one.
        """
        for group in self._groups.values():
            group.open_mark()
        return Checkpoint(
            lanes={name: lane.snapshot() for name, lane in self.lanes.items()},
            groups={key: (group.epoch, None if group.mask is None else group.mask.clone())
                    for key, group in self._groups.items()},
            turn_index=self.turn_index,
        )

    def rollback(self, point: Checkpoint) -> None:
        """Return to a checkpoint: the probe's question and answer leave no trace in history or memory."""
        for name, snapshot in point.lanes.items():
            self.lanes[name].restore(snapshot)
        for key, group in self._groups.items():
            epoch, mask = point.groups.get(key, (None, None))
            if mask is None or group.cache is None or epoch != group.epoch or group.mark != mask.shape[1]:
                group.drop_cache()
                for lane in group.lanes:
                    lane.processed = []
                continue
            group.return_to_mark(mask)
        self.turn_index = point.turn_index


def _fed(group: LaneGroup, parts: list[list[int]], logits: Tensor) -> Tensor:
    """Each row's last logits after a feed of `parts`, NaN for the rows that were fed nothing; the lanes' token
    lists now hold what was fed."""
    for lane, part in zip(group.lanes, parts):
        lane.processed.extend(part)
    fed = torch.tensor([bool(part) for part in parts])
    # NaN marks the rows that were not fed: a NaN the model computed (a broken adapter) must not pass for one.
    logits = torch.nan_to_num(logits.float(), nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    return torch.where(fed.to(logits.device).unsqueeze(1), logits, float("nan"))


def _last_logits(written: Tensor | None, reread: Tensor | None) -> Tensor | None:
    """Each row's logits after its last token this turn: from the written chunk, or the re-read one if it had none."""
    if written is None:
        return reread
    if reread is None:
        return written
    return torch.where(torch.isnan(written[:, :1]), reread, written)


def _eos_ids(model: DeltaMemModel, tokenizer) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model.backbone, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    if not ids:
        raise ValueError("the tokenizer has no end-of-sequence token: generation could never stop")
    return ids


def _generator(seed: int, turn: int, lane: str) -> torch.Generator:
    """One sampling stream per lane and turn, so batched and sequential runs draw the same numbers."""
    return torch.Generator().manual_seed(seed * 1_000_003 + turn * 101 + sum(map(ord, lane)))


def _choose(logits: Tensor, settings: GenerationSettings, generator: torch.Generator) -> int:
    """Greedy, or temperature → top-k → top-p sampling."""
    if settings.temperature <= 0:
        return int(logits.argmax())
    scores = logits.cpu() / settings.temperature
    if settings.top_k > 0:
        kth = torch.topk(scores, min(settings.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if settings.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative - ordered.softmax(-1) > settings.top_p
        scores[order[drop]] = float("-inf")
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
