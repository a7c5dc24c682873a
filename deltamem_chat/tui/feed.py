"""From the engine's worker thread to the UI: a queue the worker fills and a UI timer drains in batches.

Tokens arrive hundreds per second; refreshing the panes for each would starve the event loop and make typing lag.
The worker only enqueues; the UI drains every frame and joins each lane's consecutive text into one delta.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

from deltamem.runtime.contract import LaneDone, TokenEvent, TurnDone


@dataclass
class TextDelta:
    """Text a lane produced since the last frame, and how many tokens it took."""

    lane: str
    text: str
    tokens: int


@dataclass
class TurnFailed:
    """The engine raised; the lanes are consistent (the engine's cleanup ran) but the replies are incomplete."""

    error: Exception


FeedItem = TextDelta | LaneDone | TurnDone | TurnFailed


class TurnFeed:
    """A thread-safe queue of engine events, drained by the UI with text deltas coalesced per lane."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[TokenEvent | LaneDone | TurnDone | TurnFailed] = queue.SimpleQueue()

    def put(self, item: TokenEvent | LaneDone | TurnDone | TurnFailed) -> None:
        self._queue.put(item)

    def drain(self) -> list[FeedItem]:
        """Everything queued so far, in order, with each run of token events joined into one delta per lane."""
        items: list[FeedItem] = []
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

