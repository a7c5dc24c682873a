"""The screen the app opens on while the model loads: the step, what it reads, a bar; then the view, or why not.

The app starts at once and loading runs on a thread of its own, reporting each step (`LoadStep`) and transformers'
weight count, which would otherwise be a bar left on the terminal above the app. The thread is a daemon, not a
Textual worker: a worker runs in the event loop's executor, whose end the app's end waits for, so quitting while
loading would wait for the whole model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.events import Key
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static

from deltamem.hub import LoadError
from deltamem_chat.text import error_line

if TYPE_CHECKING:
    from deltamem.runtime.progress import LoadStep, Progress
    from deltamem_chat.tui.frame import LanesScreen

#: The exit code of a load that failed, and of quitting before it ended.
FAILED, QUIT = 2, 130


@dataclass(frozen=True)
class Ready:
    """What loading ends with: how to make the view (called on the UI thread), and notes to show on it."""

    view: Callable[[], LanesScreen[Any]]
    notes: tuple[str, ...] = ()


#: Loads (reporting its steps) and returns what opens the view; runs on the loading thread.
Prepare = Callable[["Progress"], Ready]


def failure_sentence(error: Exception) -> str:
    """The user's sentence for a failed load: a `LoadError` says it; anything else is named in one line."""
    if isinstance(error, LoadError):
        return str(error)
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"loading stopped unexpectedly ({type(error).__name__}{': ' + first if first else ''})"


class LoadingScreen(Screen[None]):
    """Runs `prepare` on a thread and shows its steps; the app opens the view it made (`Loaded`). A failure stays on
    the screen until a key is pressed, then the app ends with it printed."""

    DEFAULT_CSS = """
    LoadingScreen {
        align: center middle;
    }

    LoadingScreen #loading {
        width: 90;
        max-width: 100%;
        height: auto;
        border: round $primary;
        border-title-style: bold;
        padding: 1 2;
    }

    LoadingScreen #step {
        text-style: bold;
    }

    LoadingScreen #detail {
        color: $text-muted;
        margin-bottom: 1;
    }

    LoadingScreen #failure {
        display: none;
        color: $text-error;
    }

    LoadingScreen.-failed #failure {
        display: block;
    }

    LoadingScreen.-failed ProgressBar {
        display: none;
    }
    """

    BINDINGS = [Binding("ctrl+q", "quit", "quit", priority=True), Binding("ctrl+c", "quit", show=False,
                                                                         priority=True)]

    class Stepped(Message):
        def __init__(self, step: LoadStep) -> None:
            super().__init__()
            self.step = step

    class Loaded(Message):
        """Bubbles up to the app, which opens the view."""

        def __init__(self, ready: Ready) -> None:
            super().__init__()
            self.ready = ready

    class Failed(Message):
        def __init__(self, sentence: str) -> None:
            super().__init__()
            self.sentence = sentence

    def __init__(self, prepare: Prepare, title: str, label: str) -> None:
        """`title`: the view's (the app's title meanwhile); `label`: what loads, as the user named it."""
        super().__init__()
        self.prepare = prepare
        self.view_title = title
        self.label = label
        self.failure: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="loading") as box:
            box.border_title = f"{self.view_title} · loading {self.label}"
            yield Static("starting", id="step", markup=False)
            yield Static("", id="detail", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="bar")
            yield Static("", id="failure", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        threading.Thread(target=self._load, name="deltamem-loading", daemon=True).start()

    # ------------------------------------------------------------------------------------------ the thread
    def _load(self) -> None:
        try:
            ready = self.prepare(self._report)
        except Exception as exc:  # every failure is the user's sentence, never a traceback
            self._post(self.Failed(failure_sentence(exc)))
        else:
            self._post(self.Loaded(ready))

    def _report(self, step: LoadStep) -> None:
        self._post(self.Stepped(step))

    def _post(self, message: Message) -> None:
        try:
            self.post_message(message)
        except RuntimeError:            # the app has ended (quit while loading): nothing is left to show it
            pass

    # ------------------------------------------------------------------------------------------ the UI
    def on_loading_screen_stepped(self, message: Stepped) -> None:
        step = message.step
        self.query_one("#step", Static).update(step.step)
        self.query_one("#detail", Static).update(step.detail)
        self.query_one(ProgressBar).update(total=step.total, progress=step.done or 0)

    def on_loading_screen_failed(self, message: Failed) -> None:
        self.failure = message.sentence
        self.query_one("#step", Static).update("The model could not be loaded.")
        self.query_one("#detail", Static).update("")
        self.query_one("#failure", Static).update(f"{message.sentence}\n\nPress any key to quit.")
        self.add_class("-failed")

    def on_key(self, event: Key) -> None:
        if self.failure is not None:
            event.stop()
            self.action_quit()

    def action_quit(self) -> None:
        """Before the model is loaded: end the app (the loading thread ends with the process); after a failure,
        with the sentence printed once the screen is gone."""
        if self.failure is not None:
            self.app.exit(return_code=FAILED, message=error_line(self.failure))
        else:
            self.app.exit(return_code=QUIT)
