"""The frame every view shares: a status bar, one pane per engine lane, the write meter, and the engine's worker.

A view (the chat, the replay) is a `LanesScreen` that adds only what is its own: its controls under the meter, its
keys, and the work it runs. That work runs in a thread and tells the UI what happened through a `Feed` of typed
messages (`deltamem_chat.tui.messages`), which a timer drains once per frame, so the panes refresh at most every
`FRAME_S` however fast tokens come. While a job runs, the actions in `BUSY_ACTIONS` are disabled (the footer dims
them), so the UI never changes the engine under the worker's feet.

Everything the frame knows of the engine is the `Engine` contract: lane names and views, and the written totals and
diagnostics that each `TurnDone` reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from deltamem.runtime.contract import DELTA, LANE_TITLES, Engine, LaneDone, ReadProgress, TurnDone
from deltamem_chat.tui.commands import PaletteCommands, PaletteEntry
from deltamem_chat.tui.feed import Feed
from deltamem_chat.tui.messages import FeedItem, JobEnded, JobFailed, TextDelta
from deltamem_chat.tui.widgets import BudgetMeter, KeyFooter, LanePane, MemoryPanel, StatusBar

#: How often streamed text reaches the screen (seconds): fast enough to look live, slow enough to keep typing smooth.
FRAME_S = 0.05

#: Below this many columns the footer is compact; below this many rows the meter and the status take a line each.
NARROW_COLUMNS = 100
SHORT_ROWS = 30


@dataclass
class Job:
    """Work in flight on the worker thread: how to stop it, and the live write estimate of the meter's lane."""

    written_before: int            # the meter lane's exact total when the job (or its current item) began
    cancel: threading.Event = field(default_factory=threading.Event)
    streamed: int = 0              # tokens the meter lane generated since: each one is written
    label: str = ""                # the message that writes, as the memory panel names it
    read_from: tuple[float, int] | None = None  # when a long read's first progress came, and how far it was then

    def read_left(self, progress: ReadProgress) -> str:
        """`, m:ss left` for a long read at `progress`, at the rate it went since its first progress."""
        now = time.monotonic()
        if self.read_from is None or progress.done < self.read_from[1]:      # a new read (a replay job has many)
            self.read_from = (now, progress.done)
        start, first = self.read_from
        if progress.done >= progress.total:
            self.read_from = None
            return ""
        if progress.done == first:
            return ""
        left = round((progress.total - progress.done) * (now - start) / (progress.done - first))
        return f" · {left // 60}:{left % 60:02d} left"


JobT = TypeVar("JobT", bound=Job)


class LanesScreen(Screen[None], Generic[JobT]):
    """Status bar, a pane per lane of the engine, the write meter, and one job at a time on a worker thread."""

    COMMANDS = {PaletteCommands}
    BINDINGS = [Binding("f7", "toggle_memory", "memory", show=False, priority=True, id="memory")]
    #: The view's command palette entries.
    PALETTE: ClassVar[tuple[PaletteEntry, ...]] = ()
    #: Actions that read or change the engine: unavailable while a job runs.
    BUSY_ACTIONS: ClassVar[frozenset[str]] = frozenset()
    #: The title of the notification when the engine fails a job.
    FAILURE_TITLE: ClassVar[str] = "The engine failed"
    #: The lane whose memory the meter shows.
    METER_LANE: ClassVar[str] = DELTA
    #: Classes for the status bar (`-clipped`: long lines end in an ellipsis).
    STATUS_CLASSES: ClassVar[str] = ""

    def __init__(self, engine: Engine, info: Mapping[str, str] | None = None) -> None:
        """`info` is shown in order in the status bar's first line."""
        super().__init__()
        self.engine = engine
        # Read once: they do not change while the screen lives.
        self.lane_names = engine.lane_names
        self.titles = {name: LANE_TITLES.get(name, name) for name in self.lane_names}
        self.budget = engine.budget
        self.info = dict(info or {})
        self.feed = Feed()
        self.job: JobT | None = None
        self.written = 0  # the meter lane's exact written total, as last shown

    # ------------------------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusBar(self.info, self.titles, id="status", classes=self.STATUS_CLASSES or None)
        with Horizontal(id="lanes"):
            for name, title in self.titles.items():
                yield LanePane(name, title, memory=self.engine.lane(name).memory, id=f"lane-{name}")
        yield MemoryPanel(self.budget.horizon, f"memory · {self.titles.get(self.METER_LANE, self.METER_LANE)}",
                          id="memory")
        yield BudgetMeter(id="meter")
        yield from self.compose_controls()
        yield KeyFooter()

    def compose_controls(self) -> Iterator[Widget]:
        """The view's own widgets, between the meter and the footer."""
        yield from ()

    def on_mount(self) -> None:
        self._pump = self.set_interval(FRAME_S, self._drain, pause=True)
        self.show_budget(self.engine_written(), 0, {})

    def on_resize(self, event: events.Resize) -> None:
        """A small terminal keeps every pane some rows and the footer its keys (see app.tcss; a footer too narrow
        for its keys takes a second row, `KeyFooter`)."""
        self.set_class(event.size.height < SHORT_ROWS, "-short")
        self.set_class(event.size.width < NARROW_COLUMNS, "-narrow")
        self.query_one(Footer).compact = event.size.width < NARROW_COLUMNS

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def meter(self) -> BudgetMeter:
        return self.query_one(BudgetMeter)

    @property
    def memory_panel(self) -> MemoryPanel:
        return self.query_one(MemoryPanel)

    def action_toggle_memory(self) -> None:
        """Show or hide the memory panel (its numbers are kept either way)."""
        self.memory_panel.toggle()

    @property
    def panes(self) -> dict[str, LanePane]:
        """Each lane's pane, by lane name, in the engine's order."""
        return {pane.lane: pane for pane in self.query_one("#lanes", Horizontal).query_children(LanePane)}

    def palette_entries(self) -> tuple[PaletteEntry, ...]:
        """What the command palette offers on this view (those it can run now are shown)."""
        return self.PALETTE

    # ------------------------------------------------------------------------------------------ jobs
    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.job is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.busy
        if action in self.BUSY_ACTIONS and self.busy:
            return None
        return True

    def start(self, job: JobT, body: Callable[[JobT], None]) -> None:
        """Run `body(job)` on the worker thread; it tells the UI what happens by putting messages on `self.feed`."""
        self.job = job
        self.app.refresh_bindings()
        self._pump.resume()
        self._work(job, body)

    @work(thread=True, exclusive=True, group="job", exit_on_error=False)
    def _work(self, job: JobT, body: Callable[[JobT], None]) -> None:
        """Every failure becomes a feed message, never a crash."""
        try:
            body(job)
        except Exception as exc:  # shown to the user; the engine's own cleanup has already run
            self.feed.put(JobFailed(exc))
        else:
            self.feed.put(JobEnded())

    def action_cancel(self) -> None:
        """Stop generating after the current token; the partial replies stay, marked cancelled."""
        if self.job is not None:
            self.job.cancel.set()

    def action_quit(self) -> None:
        """How the view quits (the app asks it, whichever key or command was used)."""
        self.app.exit()

    def on_unmount(self) -> None:
        """However the app ends (ctrl+q, an error), a running job stops after its current token, not at its end."""
        if self.job is not None:
            self.job.cancel.set()

    # ------------------------------------------------------------------------------------------ feed
    async def _drain(self) -> None:
        """Apply what the worker did since the last frame."""
        job = self.job
        if job is None:
            return
        panes = self.panes
        for item in self.feed.drain():
            if isinstance(item, TextDelta):
                await panes[item.lane].append(item.text)
                if item.lane == self.METER_LANE:
                    job.streamed += item.tokens
            elif isinstance(item, JobFailed):
                self._fail(job, item.error)
                return
            elif isinstance(item, JobEnded):
                self._end(job)
                return
            elif isinstance(item, ReadProgress):
                # A long message read into memory chunk by chunk: the meter moves as it goes.
                self.status.set_info("reading", f"{item.done:,} / {item.total:,} tokens into memory"
                                                f"{job.read_left(item)}")
                if item.lane == self.METER_LANE:
                    self.show_budget(job.written_before + item.done, item.done, estimated=True)
            else:
                if isinstance(item, LaneDone):
                    self.status.set_lane(item.lane, item.stats)
                elif isinstance(item, TurnDone):
                    self.show_reported(job, item.written_total, item.diagnostics)
                self.apply(job, item)
        if job.streamed:
            # Every generated token is written; the prompt's writes are counted when the engine reports them.
            self.show_budget(job.written_before + job.streamed, job.streamed, estimated=True)

    def apply(self, job: JobT, item: FeedItem) -> None:
        """The view's part of a message (after the frame's: lane speeds in the status bar, `TurnDone` on the meter)."""

    def _fail(self, job: JobT, error: Exception) -> None:
        for pane in self.panes.values():
            if pane.streaming:
                pane.finish_reply(None, verdict="failed")
                pane.mark("failed")
        self.report_error(self.FAILURE_TITLE, error)
        self.job_failed(job)
        self._end(job)

    def job_failed(self, job: JobT) -> None:
        """The view's part of a failure, before the job ends."""

    def _end(self, job: JobT) -> None:
        self.status.clear_info("reading")
        self.job = None
        self._pump.pause()
        self.app.refresh_bindings()
        self.job_ended(job)

    def job_ended(self, job: JobT) -> None:
        """The view's part once a job is over (the next may start)."""

    # ------------------------------------------------------------------------------------------ display
    def engine_written(self) -> int:
        """The meter lane's written total, read from the engine (only while no job runs)."""
        return self.engine.lane(self.METER_LANE).written_total if self.METER_LANE in self.lane_names else 0

    def show_budget(self, written: int, increment: int, diagnostics: Mapping[str, float] | None = None, *,
                    estimated: bool = False) -> None:
        """Put numbers on the meter; `diagnostics` None keeps the last ones. An exact total is kept as `written`."""
        self.meter.update(written, self.budget.horizon, increment, self.budget.status(written),
                          None if diagnostics is None else dict(diagnostics), estimated=estimated)
        if not estimated:
            self.written = written

    def show_reported(self, job: JobT, written_total: Mapping[str, int],
                      diagnostics: Mapping[str, Mapping[str, float]]) -> None:
        """The exact meter and the memory panel's next turn from what the engine reported (a `TurnDone`); the job's
        next estimate starts from it."""
        written = written_total.get(self.METER_LANE, job.written_before)
        self.show_budget(written, written - job.written_before, diagnostics.get(self.METER_LANE, {}))
        if self.METER_LANE in diagnostics:
            self.memory_panel.record(job.label, written - job.written_before, written, diagnostics[self.METER_LANE])
        job.written_before, job.streamed = written, 0

    def report_error(self, title: str, error: BaseException) -> None:
        """An error as a notification: the message is the user's sentence (never a class name); the app runs on."""
        message = str(error).strip() or "it stopped without saying why"
        self.notify(message, title=title, severity="error", timeout=12, markup=False)
