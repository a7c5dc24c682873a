"""What the screens' tests share: an app that keeps its notifications, running a pilot scenario, waiting, pressing.

No async test plugin is needed: `run` drives a scenario to completion in its own event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from textual.pilot import Pilot

from deltamem_chat.tui import DeltaMemApp, LanePane, LanesScreen
from deltamem_chat.tui.screens import PromptDialog
from deltamem_chat.tui.widgets import ChatInput, Reply

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from threads, and on a shared 2-core machine they spin against each other.

    Autouse in the modules that import it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecordingApp(DeltaMemApp):
    """The app, keeping every notification so tests can read them."""

    def __init__(self, view: LanesScreen[Any], keys: Path | None = None) -> None:
        super().__init__(view, keys)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, **kwargs: Any) -> None:
        self.notes.append((message, str(kwargs.get("severity", "information"))))
        super().notify(message, **kwargs)


def run(app: DeltaMemApp, scenario: Callable[[Pilot], object]) -> None:
    """Run a pilot scenario to completion."""

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)  # type: ignore[misc]

    asyncio.run(main())


def view(pilot: Pilot) -> LanesScreen[Any]:
    """The app's view (under any dialog or summary)."""
    app = pilot.app
    assert isinstance(app, DeltaMemApp)
    return app.main


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


async def press(pilot: Pilot, *keys: str) -> None:
    """Press keys, then wait until the job they started (a turn, a replay command) has ended."""
    await pilot.press(*keys)
    await until(pilot, lambda: not view(pilot).busy)


async def say(pilot: Pilot, text: str) -> None:
    """Put a message in the box, press Enter and wait for the turn to end (typing key by key is tested on its own;
    here it would only cost a screen refresh a character)."""
    box = pilot.app.screen.query_one(ChatInput)
    box.text = text
    box.move_cursor(box.document.end)
    await press(pilot, "enter")


async def open_dialog(pilot: Pilot, key: str, value: str) -> None:
    """Open a dialog with its key and type `value` over the default (not submitted yet)."""
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, PromptDialog))
    dialog = pilot.app.screen
    assert isinstance(dialog, PromptDialog)
    dialog.answer.value = value


async def answer_dialog(pilot: Pilot, key: str, value: str) -> None:
    """Open a dialog with its key, type `value` over the default and submit it."""
    await open_dialog(pilot, key, value)
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(pilot.app.screen, PromptDialog))


def texts(pane: LanePane, kind: str) -> list[str]:
    """The text of a pane's `.user`, `.reply`, `.note`, `.meta` or `.flag` lines."""
    return [widget.text if isinstance(widget, Reply) else str(widget.render()) for widget in pane.query(f".{kind}")]


def replies(pane: LanePane) -> list[str]:
    """A pane's replies, as their text."""
    return [reply.text for reply in pane.query(".reply").results()]  # type: ignore[attr-defined]


def steady_cursor(pilot: Pilot) -> None:
    """Stop the input's cursor blinking (it stays shown), so a screenshot does not depend on when it is taken."""
    pilot.app.screen.query_one(ChatInput).cursor_blink = False
