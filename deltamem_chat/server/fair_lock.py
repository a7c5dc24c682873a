"""A lock that is handed over in arrival order, so no session's turn waits behind later ones."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FairLock:
    """First come, first served: `threading.Lock` promises no order, a ticket queue does."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._tickets = itertools.count()
        self._serving = 0
        self.waiting = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        self._acquire()
        try:
            yield
        finally:
            self._hand_on()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Inside `held`: the next in line goes first for the block, after which this holder queues again (a turn
        decoding through the cross-session decoder lets other turns read their prompts meanwhile)."""
        self._hand_on()
        try:
            yield
        finally:
            self._acquire()

    def _acquire(self) -> None:
        with self._changed:
            ticket = next(self._tickets)
            self.waiting += 1
            while ticket != self._serving:
                self._changed.wait()
            self.waiting -= 1

    def _hand_on(self) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()
