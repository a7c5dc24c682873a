"""From the replay worker to the UI: what the runner did, queued by the worker and drained by a UI timer.

Like the chat's `TurnFeed`, runs of token events are joined into one `TextDelta` per lane, so a frame costs one
update per pane however fast tokens come. The worker also reports the memory after each item, so the UI never
reads the engine while a command runs.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

from deltamem.runtime import LaneDone, TokenEvent
from deltamem_chat.replay import StepRecord, StepStarted
from deltamem_chat.tui.feed import TextDelta


@dataclass
class Stepped:
    """An item is done: its record, and the δ-mem lane's exact write count and diagnostics right after it."""

    record: StepRecord
    written: int
    diagnostics: dict[str, float]


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


class ReplayFeed:
    """A thread-safe queue of replay events, drained by the UI with token runs joined per lane."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[WorkerItem] = queue.SimpleQueue()

    def put(self, item: WorkerItem) -> None:
        self._queue.put(item)

    def drain(self) -> list[ReplayItem]:
        """Everything queued so far, in order, with each run of token events joined into one delta per lane."""
        items: list[ReplayItem] = []
        pending: dict[str, TextDelta] = {}
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, TokenEvent):
                delta = pending.setdefault(item.lane, TextDelta(item.lane, "", 0))
                delta.text += item.text
                delta.tokens += 1
                continue
            items.extend(pending.values())
            pending.clear()
            items.append(item)
        items.extend(pending.values())
        return items
