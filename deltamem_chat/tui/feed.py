"""From a worker thread to the UI: a queue the worker fills and a UI timer drains in batches.

Tokens arrive hundreds per second; refreshing the panes for each would starve the event loop and make typing lag.
The worker only enqueues; the UI drains every frame and joins each lane's consecutive text into one delta.
"""

from __future__ import annotations

import queue

from deltamem.runtime.contract import TokenEvent
from deltamem_chat.tui.messages import FeedItem, Posted, TextDelta


class Feed:
    """A thread-safe queue of worker messages, drained by the UI with text deltas coalesced per lane."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Posted] = queue.SimpleQueue()

    def put(self, item: Posted) -> None:
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
