"""What the worker threads tell the UI: small typed messages, put on a `Feed` and drained once per frame.

A worker posts the engine's events (`TokenEvent`, `LaneDone`, `TurnDone`) and the replay runner's `StepStarted` as they
come, and the messages below; every job ends with `JobEnded` or `JobFailed`. The UI receives runs of token events
joined into one `TextDelta` per lane, and everything else in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltamem.runtime.contract import LaneDone, ReadProgress, TokenEvent, TurnDone
from deltamem_chat.replay import StepRecord, StepStarted


@dataclass
class TextDelta:
    """Text a lane produced since the last frame, and how many tokens it took."""

    lane: str
    text: str
    tokens: int


@dataclass
class Stepped:
    """A replayed item is done: its record, and what the engine reported at its end (each lane's exact written total
    right after it, a probe's rolled back with it; the memory lanes' diagnostics)."""

    record: StepRecord
    written_total: dict[str, int]
    diagnostics: dict[str, dict[str, float]]


@dataclass
class Restarted:
    """The replay runner is back before the first item, with empty lanes and memory."""


@dataclass
class JobEnded:
    """The worker is done (the turn answered; the replay reached its target, paused or stopped): the next may start."""


@dataclass
class JobFailed:
    """The engine raised; its own cleanup has run, but the replies of the turn or item are incomplete."""

    error: Exception


#: What a worker puts on the feed.
Posted = TokenEvent | ReadProgress | LaneDone | TurnDone | StepStarted | Stepped | Restarted | JobEnded | JobFailed

#: What the UI drains from it.
FeedItem = TextDelta | ReadProgress | LaneDone | TurnDone | StepStarted | Stepped | Restarted | JobEnded | JobFailed
