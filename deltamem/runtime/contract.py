"""The engine contract: everything the screens, the replay runner and the reports use of an A/B engine.

`ABEngine` implements it on a model in this process; test doubles implement it (and are type-checked against it);
a remote engine can too, because nothing here holds a tensor or assumes the model is near: lanes are seen as plain
`LaneView`s, a turn streams plain events, and each turn's end (`TurnDone`) carries the written totals and the memory
diagnostics of its lanes, which only the engine can map from model rows to lane names. No torch is imported here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from deltamem.context import ContextPolicy, WriteBudget

#: The lane names, each named by what it has: `frozen` nothing (the plain backbone), `delta` the memory, `rag` the
#: retrieval of messages the window dropped, `delta+rag` both.
FROZEN = "frozen"
DELTA = "delta"
RAG = "rag"
DELTA_RAG = "delta+rag"
ALL_LANES = (FROZEN, DELTA, RAG, DELTA_RAG)

#: The lanes run unless others are asked for.
LANE_NAMES = (FROZEN, DELTA)

#: How the screens title each lane.
LANE_TITLES = {FROZEN: "frozen", DELTA: "δ-mem", RAG: "retrieval", DELTA_RAG: "δ-mem + retrieval"}

#: What each lane's pane has, in words (the chat's introduction).
LANE_HAS = {FROZEN: "the window alone", DELTA: "the window and δ-mem's memory of everything read",
            RAG: "the window and the dropped messages retrieved back (BM25)",
            DELTA_RAG: "the window, the memory and the retrieved messages"}


def has_memory(lane: str) -> bool:
    """Whether the lane reads and writes δ-mem's memory."""
    return "delta" in lane.split("+")


def has_retrieval(lane: str) -> bool:
    """Whether the lane gets the messages its window dropped retrieved back into its prompt."""
    return "rag" in lane.split("+")


def parse_lanes(text: str) -> tuple[str, ...]:
    """`frozen,delta,rag` as lane names in the order given; ValueError naming what is wrong."""
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in ALL_LANES]
    if unknown or not names:
        raise ValueError(f"lanes {text!r}: choose one to four of {', '.join(ALL_LANES)}, separated by commas")
    if len(set(names)) != len(names):
        raise ValueError(f"lanes {text!r} names a lane twice")
    return names


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding: greedy unless temperature > 0, then seeded sampling (same seed → same text)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    stop_at_eos: bool = True         # False decodes exactly max_new_tokens (benchmarks)


@dataclass
class TurnStats:
    """What one lane did in one turn."""

    tokens: int = 0                  # tokens generated
    written: int = 0                 # tokens written into memory during the turn (prompt and reply)
    ttft_s: float | None = None      # time to first token, from the start of the turn
    tokens_per_s: float | None = None
    seconds: float = 0.0
    cancelled: bool = False
    rebuilt: bool = False            # the window moved or the cache was gone: the prompt was re-read from its start
    reread: int = 0                  # tokens read again with writes off (the template or the window changed them)
    long_read: int = 0               # of a message longer than the window: tokens read into memory in chunks
    long_total: int = 0              # and its length (long_read < long_total: the read was cancelled)
    #: Retrieval lanes: the messages put back into the prompt, in order, each {"index", "role", "content"}
    #: (index: the message's place in the lane's conversation).
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    window_start: int | None = None  # the index of the first message of the prompt's window after the system prompt

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "retrieved": [dict(r) for r in self.retrieved]}


@dataclass
class TokenEvent:
    """A lane produced text (a token's worth; may be empty while a multi-byte character is incomplete)."""

    lane: str
    text: str
    token_id: int


@dataclass
class ReadProgress:
    """A lane is reading a long message into memory: `done` of `total` tokens so far."""

    lane: str
    done: int
    total: int


@dataclass
class LaneDone:
    """A lane finished its reply (EOS, length limit or cancel)."""

    lane: str
    text: str
    stats: TurnStats


@dataclass
class TurnDone:
    """Every lane of the turn finished: their stats, memory written since the last reset, and the memory lanes'
    diagnostics (mean β, ‖Δo‖/‖o‖ of the turn's last forward, ‖S‖, and each layer's ‖S‖ as `state_norm.<i>`)."""

    stats: dict[str, TurnStats] = field(default_factory=dict)
    written_total: dict[str, int] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, float]] = field(default_factory=dict)


Event = TokenEvent | ReadProgress | LaneDone | TurnDone


@dataclass(frozen=True)
class LaneView:
    """What may be known of a lane from outside the engine: its conversation and its written total."""

    name: str
    memory: bool
    messages: tuple[dict[str, str], ...]
    written_total: int
    retrieval: bool = False


@dataclass(frozen=True)
class SessionIdentity:
    """What a session was made with; loading into anything else is refused."""

    base: str
    adapter: str

    def to_dict(self) -> dict[str, str]:
        return {"base": self.base, "adapter": self.adapter}


@runtime_checkable
class Engine(Protocol):
    """An A/B conversation: lanes answering the same messages, token by token."""

    budget: WriteBudget

    @property
    def lane_names(self) -> tuple[str, ...]:
        """Every lane, in the order the screens show them."""
        ...

    @property
    def policy(self) -> ContextPolicy: ...

    @property
    def batched(self) -> bool:
        """Whether the lanes of a turn run as rows of one forward (else one after the other)."""
        ...

    def lane(self, name: str) -> LaneView: ...

    def set_policy(self, policy: ContextPolicy) -> None: ...

    def add_message(self, role: str, content: str, lanes: Sequence[str] | None = None) -> None:
        """Append a recorded message without generating (teacher forcing); it is read at the next turn."""
        ...

    def turn(self, user_text: str, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        """Send `user_text` to the lanes and stream their replies; ends with `TurnDone`."""
        ...

    def respond(self, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
                cancel: threading.Event | None = None) -> Iterator[Event]:
        """Generate each lane's reply to its conversation as it stands; ends with `TurnDone`."""
        ...

    def ingest(self, lanes: Sequence[str] | None = None) -> TurnDone:
        """Read (and write into memory) the messages not read yet, without generating."""
        ...

    def read(self, lanes: Sequence[str] | None = None, cancel: threading.Event | None = None) -> Iterator[Event]:
        """`ingest`, streaming `ReadProgress` while a long message is read into memory; ends with `TurnDone`."""
        ...

    def checkpoint(self) -> object:
        """An opaque point to `rollback` to (one open at a time)."""
        ...

    def rollback(self, point: Any) -> None: ...

    def reset(self) -> None:
        """Forget every lane's conversation and memory."""
        ...

    def reset_memory(self) -> None:
        """Empty the memory and its counters, keeping the conversation."""
        ...

    def save(self, folder: Path, identity: SessionIdentity, extra: dict[str, Any] | None = None) -> Path:
        """Write the conversation and the memory into `folder`."""
        ...

    def load(self, folder: Path, identity: SessionIdentity) -> dict[str, Any]:
        """Replace the conversation and the memory with a saved session; returns its `extra` data."""
        ...


__all__ = ["ALL_LANES", "DELTA", "DELTA_RAG", "FROZEN", "LANE_HAS", "LANE_NAMES", "LANE_TITLES", "RAG", "Engine",
           "Event", "GenerationSettings", "LaneDone", "LaneView", "ReadProgress", "SessionIdentity", "TokenEvent",
           "TurnDone", "TurnStats", "has_memory", "has_retrieval", "parse_lanes"]
