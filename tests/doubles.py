"""An engine double for the screens' tests: the whole `Engine` contract, scripted, without a model or torch.

mypy checks it against the contract (`python -m mypy`, configured in pyproject.toml; `_as_engine` below is where a
mismatch shows), and a test runs that check, so the double cannot drift from what the screens rely on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltamem.context import ContextPolicy, WriteBudget
from deltamem.files import atomic_write_text, read_json
from deltamem.runtime.contract import (
    FROZEN,
    LANE_NAMES,
    RAG,
    Engine,
    Event,
    GenerationSettings,
    LaneDone,
    LaneView,
    SessionIdentity,
    TokenEvent,
    TurnDone,
    TurnStats,
    has_retrieval,
)

#: What every memory lane reports at the end of a turn.
DIAGNOSTICS = {"beta_mean": 0.42, "delta_o_ratio": 0.031, "state_norm": 1.58}

#: A lane's answer to a question `answers` does not list.
UNKNOWN = "I do not know."

#: The longest a held turn waits for its release or its cancel.
HOLD_LIMIT_S = 30.0


@dataclass
class ScriptedLane:
    """One lane's conversation and counters (what `ABEngine`'s lanes hold, less the tensors)."""

    name: str
    memory: bool
    messages: list[dict[str, str]] = field(default_factory=list)
    written_total: int = 0
    read_upto: int = 0
    turns: list[TurnStats] = field(default_factory=list)

    def clear(self) -> None:
        self.messages, self.written_total, self.read_upto, self.turns = [], 0, 0, []


class ScriptedEngine:
    """Stands in for `ABEngine` where the model does not matter: chosen replies, fixed stats and diagnostics.

    Replies: with `pieces`, every lane streams those pieces (one token each); otherwise each lane answers the last
    message word by word with `answers[message][lane]` (`UNKNOWN` when not listed).
    Writes, in memory lanes only: with `prompt_written`, that many for the prompt plus one per piece streamed;
    without, one per character of the message answered and of the answer (and `ingest` one per character read).
    `written` is where the memory lanes' totals start. With `hold`, a turn waits after streaming until `release` (or
    its cancel) is set, so a test sees a fixed mid-stream state; `delay` slows each piece; `fail` is raised once the
    pieces are out (after the hold). `lanes` names the lanes, every one but `frozen` and `rag` with memory; a
    retrieval lane (`rag`, `delta+rag`) retrieves the conversation's first message once two more follow it.
    `diagnostics` are what the memory lanes report, one per turn in turn (default: `DIAGNOSTICS` every turn).
    """

    batched = True

    def __init__(self, answers: Mapping[str, Mapping[str, str]] | None = None, *, pieces: Sequence[str] | None = None,
                 lanes: Sequence[str] = LANE_NAMES, prompt_written: int | None = None, written: int = 0,
                 hold: bool = False, delay: float = 0.0, fail: Exception | None = None,
                 diagnostics: Sequence[Mapping[str, float]] = (DIAGNOSTICS,)) -> None:
        self.lanes = {name: ScriptedLane(name, memory=name not in (FROZEN, RAG)) for name in lanes}
        for lane in self.lanes.values():
            lane.written_total = written if lane.memory else 0
        self.policy = ContextPolicy.parse("window:1024")
        self.budget = WriteBudget()
        self.answers = answers or {}
        self.pieces = None if pieces is None else list(pieces)
        self.prompt_written = prompt_written
        self.hold = hold
        self.delay = delay
        self.fail = fail
        self.diagnostics = list(diagnostics)
        self.turns_done = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.cancels: list[threading.Event | None] = []  # each turn's cancel, in order

    # ------------------------------------------------------------------------------------------ lanes
    @property
    def lane_names(self) -> tuple[str, ...]:
        return tuple(self.lanes)

    def lane(self, name: str) -> LaneView:
        lane = self.lanes[name]
        return LaneView(name, lane.memory, tuple(dict(m) for m in lane.messages), lane.written_total,
                        has_retrieval(name))

    def set_policy(self, policy: ContextPolicy) -> None:
        self.policy = policy

    def add_message(self, role: str, content: str, lanes: Sequence[str] | None = None) -> None:
        for name in lanes or self.lanes:
            self.lanes[name].messages.append({"role": role, "content": content})

    def reset(self) -> None:
        for lane in self.lanes.values():
            lane.clear()

    def reset_memory(self) -> None:
        for lane in self.lanes.values():
            lane.written_total = 0

    # ------------------------------------------------------------------------------------------ turns
    def turn(self, user_text: str, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        self.add_message("user", user_text, lanes)
        yield from self.respond(settings, lanes=lanes, cancel=cancel)

    def respond(self, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
                cancel: threading.Event | None = None) -> Iterator[Event]:
        self.cancels.append(cancel)
        names = list(lanes or self.lanes)
        asked = self.lanes[names[0]].messages[-1]["content"]
        planned = {name: self._reply(asked, name) for name in names}
        said: dict[str, list[str]] = {name: [] for name in names}
        for index in range(max(len(pieces) for pieces in planned.values())):
            if cancel is not None and cancel.is_set():
                break
            for name in names:
                if index < len(planned[name]):
                    said[name].append(planned[name][index])
                    yield TokenEvent(name, planned[name][index], index)
            time.sleep(self.delay)
        if self.hold:
            self.holding.set()
            deadline = time.monotonic() + HOLD_LIMIT_S
            while not self.release.wait(0.01) and not (cancel is not None and cancel.is_set()):
                if time.monotonic() > deadline:  # nothing let it go: a test failing, not hanging
                    break
        if self.fail is not None:
            raise self.fail
        done = TurnDone()
        reported = self._next_diagnostics()
        for name in names:
            lane, text = self.lanes[name], "".join(said[name])
            stats = TurnStats(tokens=len(said[name]), ttft_s=0.05, tokens_per_s=25.0, seconds=0.2,
                              cancelled=len(said[name]) < len(planned[name]))
            if has_retrieval(name) and len(lane.messages) > 2:
                stats.retrieved = [{"index": 0, **lane.messages[0]}]
            if lane.memory:
                stats.written = (len(asked) + len(text) if self.prompt_written is None
                                 else self.prompt_written + len(said[name]))
                lane.written_total += stats.written
                done.diagnostics[name] = reported
            lane.messages.append({"role": "assistant", "content": text})
            lane.read_upto = len(lane.messages)
            lane.turns.append(stats)
            done.stats[name] = stats
            done.written_total[name] = lane.written_total
            yield LaneDone(name, text, stats)
        yield done

    def _reply(self, asked: str, lane: str) -> list[str]:
        if self.pieces is not None:
            return list(self.pieces)
        words = self.answers.get(asked, {}).get(lane, UNKNOWN).split(" ")
        return [(" " if index else "") + word for index, word in enumerate(words)]

    def read(self, lanes: Sequence[str] | None = None, cancel: threading.Event | None = None) -> Iterator[Event]:
        yield self.ingest(lanes)

    def ingest(self, lanes: Sequence[str] | None = None) -> TurnDone:
        done = TurnDone()
        reported = self._next_diagnostics()
        for name in lanes or self.lanes:
            lane = self.lanes[name]
            unread = lane.messages[lane.read_upto:]
            written = sum(len(message["content"]) for message in unread) if lane.memory else 0
            lane.read_upto, lane.written_total = len(lane.messages), lane.written_total + written
            done.stats[name] = TurnStats(written=written)
            done.written_total[name] = lane.written_total
            if lane.memory:
                done.diagnostics[name] = reported
        return done

    def _next_diagnostics(self) -> dict[str, float]:
        self.turns_done += 1
        return dict(self.diagnostics[(self.turns_done - 1) % len(self.diagnostics)])

    # ------------------------------------------------------------------------------------------ state
    def checkpoint(self) -> dict[str, tuple[list[dict[str, str]], int, int]]:
        return {name: (list(lane.messages), lane.written_total, lane.read_upto) for name, lane in self.lanes.items()}

    def rollback(self, point: Any) -> None:
        for name, (messages, written, read_upto) in point.items():
            lane = self.lanes[name]
            lane.messages, lane.written_total, lane.read_upto = list(messages), written, read_upto

    def save(self, folder: Path, identity: SessionIdentity, extra: dict[str, Any] | None = None) -> Path:
        lanes = {name: {"messages": lane.messages, "written_total": lane.written_total}
                 for name, lane in self.lanes.items()}
        data = {"identity": identity.to_dict(), "policy": str(self.policy), "lanes": lanes, "extra": extra or {}}
        atomic_write_text(Path(folder) / "session.json", json.dumps(data))
        return Path(folder)

    def load(self, folder: Path, identity: SessionIdentity) -> dict[str, Any]:
        data = read_json(Path(folder) / "session.json", ValueError, "no saved session here")
        if data["identity"] != identity.to_dict():
            raise ValueError(f"{folder}: saved with {data['identity']}, not {identity.to_dict()}")
        self.policy = ContextPolicy.parse(data["policy"])
        for name, saved in data["lanes"].items():
            lane = self.lanes[name]
            lane.messages, lane.written_total = list(saved["messages"]), int(saved["written_total"])
            lane.read_upto, lane.turns = len(lane.messages), []
        return dict(data["extra"])


def _as_engine() -> Engine:
    """Where mypy checks the double against the contract (never called)."""
    return ScriptedEngine()
