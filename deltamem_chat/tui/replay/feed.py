"""From the replay worker to the UI: what the runner did, queued by the worker and drained by a UI timer.

Like the chat's `TurnFeed`, runs of token events are joined into one `TextDelta` per lane, so a frame costs one
update per pane however fast tokens come. The worker also reports the memory after each item, so the UI never
reads the engine while a command runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltamem.runtime.contract import LaneDone, TokenEvent
from deltamem_chat.replay import StepRecord, StepStarted
from deltamem_chat.tui.feed import TextDelta, TurnFeed


@dataclass
class Stepped:
    """An item is done: its record, and what the engine reported at its end (each lane's exact written total right
    after it, the memory lanes' diagnostics)."""

    record: StepRecord
    written_total: dict[str, int]
    diagnostics: dict[str, dict[str, float]]


@dataclass
class Restarted:
    """The runner is back before the first item, with empty lanes and memory."""


@dataclass
class JobEnded:
    """The worker stopped driving the runner (target reached, paused or cancelled): the next command may start."""


@dataclass
class JobFailed:
    """The engine raised mid-item; the item was not recorded and the lanes may hold part of it."""

    error: Exception


WorkerItem = StepStarted | TokenEvent | LaneDone | Stepped | Restarted | JobEnded | JobFailed
ReplayItem = StepStarted | TextDelta | LaneDone | Stepped | Restarted | JobEnded | JobFailed


class ReplayFeed(TurnFeed):
    """The chat's feed, carrying replay events too: token runs are joined per lane, everything else kept in order."""
