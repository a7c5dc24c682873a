"""Engine work off the event loop: on a worker thread, after every turn that came first (and every request before it
on the same session), its items handed to the request as they come."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio

from deltamem_chat.server.sessions import SessionStore

T = TypeVar("T")
_END = object()


async def locked(store: SessionStore, work: Callable[[], T], session: str | None = None) -> T:
    """Run `work` on a worker thread holding the session's lock (if it names one), then the store's."""
    def held() -> T:
        with store.using(session), store.lock.held():
            return work()
    return await anyio.to_thread.run_sync(held)


async def streamed(store: SessionStore, work: Callable[[], Iterator[Any]], cancel: threading.Event,
                   session: str | None = None) -> AsyncIterator[Any]:
    """The items `work` yields under the lock, as they come; its exception is raised here; leaving early (a client
    gone) sets `cancel`, which the engine checks between tokens and chunks."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def produce() -> None:
        try:
            for item in work():
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except Exception as exc:  # noqa: BLE001 - every failure is handed to the request that caused it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    task = asyncio.ensure_future(locked(store, produce, session))
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item
        await task
    finally:
        cancel.set()
