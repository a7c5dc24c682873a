"""The replay screen: a saved transcript fed to the frozen and δ-mem panes item by item, with its probes scored.

One worker thread drives the runner per command (step, play, jump, restart); what it does reaches the UI through
a `ReplayFeed` that a timer drains once per frame. While a command runs, the UI never touches the runner or the
engine: it keeps its own list of finished records for the scores and the summary, and writes reports only once
no command runs (quitting stops the running one first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Footer, Static

from deltamem.files import atomic_write_text
from deltamem.runtime.contract import DELTA, LANE_TITLES, LaneDone, SessionIdentity, TurnStats
from deltamem_chat.replay import ReplayRunner, StepFinished, StepRecord, StepStarted, build_report, to_markdown
from deltamem_chat.replay.report import write_json
from deltamem_chat.scoring import ProbeScore, summarise
from deltamem_chat.text import stamp
from deltamem_chat.tui.app import FRAME_S
from deltamem_chat.tui.feed import TextDelta
from deltamem_chat.tui.replay.commands import ReplayCommands
from deltamem_chat.tui.replay.feed import JobEnded, JobFailed, ReplayFeed, Restarted, Stepped
from deltamem_chat.tui.replay.summary import SummaryScreen, SummaryView
from deltamem_chat.tui.screens import PromptDialog
from deltamem_chat.tui.widgets import BudgetMeter, LanePane, StatusBar

#: Actions about the replay itself: hidden while the summary screen is up.
REPLAY_ACTIONS = frozenset({"step", "play", "jump", "restart", "cancel", "summary"})

#: Actions that start a command or read the runner: unavailable while a command runs.
IDLE_ACTIONS = frozenset({"step", "jump", "export"})


@dataclass
class _Job:
    """The command in flight: how far it replays, the two ways to stop it early, and the live write estimate."""

    kind: str                      # "step", "play", "jump" or "restart"
    target: int                    # replay until this many items are done
    restart: bool                  # restart the runner first
    written_before: int
    cancel: threading.Event = field(default_factory=threading.Event)  # stop generating now (Escape, quit)
    pause: threading.Event = field(default_factory=threading.Event)   # stop after the current item (p)
    streamed: int = 0
    stepped: int = 0


def _short(model: str) -> str:
    """A model's last path part: the status line has room for names, not for folders."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def probe_verdict(score: ProbeScore, expected: str) -> str:
    """The line under a probe's answer: hit or miss, token F1, and what the transcript expected."""
    return f"{'✓ hit' if score.hit else '✗ miss'} · F1 {score.f1:.2f} · expected: {expected}"


class ReplayApp(App[None]):
    """A transcript replayed through the frozen and δ-mem lanes side by side, stepping, playing or jumping."""

    CSS_PATH = Path(__file__).parent.parent / "app.tcss"  # the chat's stylesheet, with the replay's rules
    TITLE = "deltamem-chat replay"
    COMMANDS = App.COMMANDS | {ReplayCommands}
    BINDINGS = [
        Binding("n", "step", "step"),
        Binding("space", "step", "step", show=False),
        Binding("p", "play", "play/pause"),
        Binding("j", "jump", "jump to"),
        Binding("r", "restart", "restart"),
        Binding("escape", "cancel", "stop"),
        Binding("s", "summary", "summary"),
        Binding("e", "export", "export"),
        Binding("q", "quit", "quit"),
    ]

    status_bar: StatusBar
    meter: BudgetMeter

    def __init__(self, runner: ReplayRunner, config: dict[str, Any], *, identity: SessionIdentity,
                 report_path: Path | None = None, markdown_path: Path | None = None) -> None:
        """`config` is the report's config block; `report_path`/`markdown_path` also get a report on quit."""
        super().__init__()
        self.runner = runner
        self.config = config
        self.report_path = report_path
        self.markdown_path = markdown_path
        # Read once, before any worker starts; none of them changes during the replay.
        self.lanes = list(runner.lanes)
        self.total = len(runner.transcript.items)
        self.regenerate = runner.regenerate
        self.budget = runner.engine.budget
        self.titles = {name: LANE_TITLES.get(name, name) for name in runner.engine.lane_names}
        self.transcript_title = str(config.get("title") or Path(str(config.get("transcript", "transcript"))).name)
        # The UI's own copy of the progress, updated from the feed: the runner's belongs to the worker.
        self.records: list[StepRecord] = list(runner.records)
        self.position = runner.position
        self.written = runner.budget()["written"]
        self.failed = False
        self.info = {
            "item": f"{self.position}/{self.total}", "state": self._idle_state(), "transcript": self.transcript_title,
            "models": f"{_short(identity.base)} + {_short(identity.adapter)}",
            "device": f"{config.get('device', '?')} · {config.get('dtype', '?')}",
            "policy": str(config.get("context_policy", "?")),
        }
        self.panes: dict[str, LanePane] = {}
        self._feed = ReplayFeed()
        self._job: _Job | None = None
        self._then: Callable[[], None] | None = None
        self._stats: dict[str, TurnStats] = {}
        self._quit_without_report = False

    # ------------------------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusBar(self.info, self.titles, id="replay-status", classes="-clipped")
        with Horizontal(id="lanes"):
            for name, title in self.titles.items():
                yield LanePane(name, title, memory=self.runner.engine.lane(name).memory, id=f"lane-{name}")
        yield BudgetMeter(id="meter")
        yield Footer()

    def on_mount(self) -> None:
        # Kept, not queried: the summary screen may be on top while the worker still feeds the panes.
        self.panes = {pane.lane: pane for pane in self.query(LanePane)}
        self.status_bar = self.query_one(StatusBar)
        self.meter = self.query_one(BudgetMeter)
        self._pump = self.set_interval(FRAME_S, self._drain, pause=True)
        for name, pane in self.panes.items():
            if name not in self.lanes:
                pane.set_paused(True)
                pane.border_subtitle = "off · replay with --ab to compare"
                pane.add_note(f"The {self.titles[name]} lane sits out this replay: run it with --ab to see both.")
                self.status_bar.set_paused(name, True)
        self._show_budget(self.written, 0, {})

    @property
    def busy(self) -> bool:
        """Whether a command is driving the runner."""
        return self._job is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, SummaryScreen) and action in REPLAY_ACTIONS:
            return False
        if action == "cancel":
            return self.busy
        if action == "play" and self._job is not None and self._job.kind != "play":
            return None
        if action in IDLE_ACTIONS and self.busy:
            return None
        return True

    # ------------------------------------------------------------------------------------------ commands
    def action_step(self) -> None:
        if not self.busy and self._can_go_on():
            self._start("step", self.position + 1)

    def action_play(self) -> None:
        """Play to the end, or, while playing, pause after the current item."""
        if self._job is not None:
            if self._job.kind == "play":
                self._job.pause.set()
                self._set_state("pausing after this item")
            return
        if self._can_go_on():
            self._start("play", self.total)

    def action_jump(self) -> None:
        if self.busy:
            return
        question = (f"Replay until this many of the {self.total} items are done (0 to {self.total}). "
                    "An earlier point restarts from the first item.")
        self.push_screen(PromptDialog("Jump to item", question, str(self.position)), self._jump)

    def _jump(self, answer: str | None) -> None:
        if answer is None or self.busy:
            return
        target = int(answer) if answer.isdigit() else -1
        if not 0 <= target <= self.total:
            self.notify(f"Not an item number: {answer!r} (0 to {self.total}).", severity="warning", markup=False)
            return
        restart = target < self.position or self.failed
        if target == self.position and not restart:
            self.notify(f"Already at item {target}.")
            return
        self._start("jump", target, restart=restart)

    def action_restart(self) -> None:
        """Back to the first item; a running command is stopped first."""
        if self._job is None:
            self._start("restart", 0, restart=True)
            return
        self._stop(self._job, "stopping, then restarting")
        self._then = lambda: self._start("restart", 0, restart=True)

    def action_cancel(self) -> None:
        """Stop the answer being generated (it stays, marked cancelled) and stop playing or jumping."""
        if self._job is not None:
            self._stop(self._job, "stopping")

    def action_summary(self) -> None:
        self.push_screen(SummaryScreen(self._summary_view()))

    def action_export(self) -> None:
        """Write the JSON and Markdown reports: to the paths given on the command line, else timestamped here."""
        if self.busy:
            return
        when = stamp()
        report = self.report_path or Path(f"replay-{when}.json")
        markdown = self.markdown_path or Path(f"replay-{when}.md")
        if self._write_report(report, markdown, "Could not export the report"):
            self.notify(f"Report: {report}\nMarkdown: {markdown}", title="Exported", markup=False)

    def action_quit(self) -> None:
        """Quit once no command runs; with a report path, the report (partial if unfinished) is written first."""
        if self._job is not None:
            self._stop(self._job, "stopping, then quitting")
            self._then = self._quit
            return
        self._quit()

    def _quit(self) -> None:
        wanted = self.report_path is not None or self.markdown_path is not None
        if wanted and not self._quit_without_report:
            if not self._write_report(self.report_path, self.markdown_path, "Could not write the report"):
                self._quit_without_report = True
                self.notify("Press q again to quit without the report.", severity="warning")
                return
        self.exit(return_code=1 if self._quit_without_report else 0)

    def on_unmount(self) -> None:
        """However the app ends, a running command stops after its current token."""
        if self._job is not None:
            self._job.cancel.set()

    def _can_go_on(self) -> bool:
        """Whether stepping forward makes sense; says why not."""
        if self.failed:
            self.notify("The replay stopped at an error: r restarts, j replays up to an item.", severity="warning")
        elif self.position >= self.total:
            self.notify("The transcript is done: s shows the summary, r restarts, j jumps back.")
        return not self.failed and self.position < self.total

    def _start(self, kind: str, target: int, *, restart: bool = False) -> None:
        self._job = _Job(kind, target, restart, 0 if restart else self.written)
        states = {"step": "stepping", "play": "playing", "jump": f"jumping to {target}", "restart": "restarting"}
        self._set_state(states[kind])
        self.refresh_bindings()
        self._pump.resume()
        self._drive(self._job)

    def _stop(self, job: _Job, state: str) -> None:
        job.cancel.set()
        self._set_state(state)

    # ------------------------------------------------------------------------------------------ worker
    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def _drive(self, job: _Job) -> None:
        """Run one command on the runner off the UI thread; a failure becomes a feed item, never a crash."""
        runner = self.runner
        try:
            if job.restart:
                runner.restart()
                self._feed.put(Restarted())
            while (runner.position < job.target and not runner.finished
                   and not job.cancel.is_set() and not job.pause.is_set()):
                for event in runner.step(job.cancel):
                    if isinstance(event, StepFinished):
                        memory = event.memory
                        self._feed.put(Stepped(event.record, dict(memory.written_total), dict(memory.diagnostics)))
                    else:
                        self._feed.put(event)
        except Exception as exc:  # shown to the user; the item was not recorded
            self._feed.put(JobFailed(exc))
        else:
            self._feed.put(JobEnded())

    # ------------------------------------------------------------------------------------------ feed
    def _drain(self) -> None:
        """Apply what the worker did since the last frame."""
        job = self._job
        if job is None:
            return
        for item in self._feed.drain():
            if isinstance(item, StepStarted):
                self._begin(item.record)
            elif isinstance(item, TextDelta):
                self.panes[item.lane].append(item.text)
                if item.lane == DELTA:
                    job.streamed += item.tokens
            elif isinstance(item, LaneDone):
                self._stats[item.lane] = item.stats
                self.status_bar.set_lane(item.lane, item.stats)
            elif isinstance(item, Stepped):
                self._finish(job, item)
            elif isinstance(item, Restarted):
                self._clear(job)
            elif isinstance(item, JobFailed):
                self._fail(job, item.error)
                return
            else:
                self._end(job)
                return
        if job.streamed:
            # Every generated token is written; the prompt's writes (and a probe's rollback) show when it ends.
            self._show_budget(job.written_before + job.streamed, job.streamed, estimated=True)

    def _begin(self, record: StepRecord) -> None:
        """Show an item as it is fed: messages at once, replies opened for streaming."""
        self._stats.clear()
        self.status_bar.set_info("item", f"{record.index + 1}/{self.total}")
        probe_number = sum(done.kind == "probe" for done in self.records) + 1
        for pane in self._active_panes():
            if record.kind == "probe":
                pane.add_note(f"probe {probe_number} · asked here, then rolled back")
                pane.add_user(record.text)
                pane.start_reply()
            elif record.role == "system":
                pane.add_note(f"system: {record.text}")
            elif record.role == "user":
                pane.add_user(record.text)
            elif self.regenerate:
                pane.start_reply()
            else:
                pane.start_reply()
                pane.append(record.text)
                pane.finish_reply(None, verdict="recorded, fed as written")
                pane.mark("recorded")

    def _finish(self, job: _Job, item: Stepped) -> None:
        """Close an item's replies with their stats and verdicts; flag where the lanes differ; exact meter."""
        record, outcome = item.record, item.record.outcome
        self.records.append(record)
        self.position = record.index + 1
        job.stepped += 1
        for lane, step in record.lanes.items():
            pane = self.panes[lane]
            stats = self._stats.get(lane)
            if outcome is not None:
                score = outcome.scores[lane]
                # A probe's writes are rolled back with it: showing them would contradict the meter.
                pane.finish_reply(replace(stats, written=0) if stats else None,
                                  verdict=probe_verdict(score, outcome.expected), text=step.text)
                pane.mark("good" if score.hit else "bad")
            elif pane.streaming:
                pane.finish_reply(stats, text=step.text)
            if record.differs:
                pane.mount(Static(Content("⚑ lanes differ"), classes="note flag"))
        if outcome is not None:
            self._show_scores()
        written = item.written_total.get(DELTA, job.written_before)
        self._show_budget(written, written - job.written_before, item.diagnostics.get(DELTA, {}))
        self.written = job.written_before = written
        job.streamed = 0
        if job.kind == "jump":
            self._set_state(f"jumping to {job.target} · {self.position}/{job.target}")

    def _clear(self, job: _Job) -> None:
        """The runner restarted: empty panes, scores and meter."""
        self.records.clear()
        self.position = self.written = job.written_before = 0
        self.failed = False
        for name in self.lanes:
            self.panes[name].clear()
            self.panes[name].border_subtitle = ""
            self.status_bar.set_lane(name, None)
        self.status_bar.set_info("item", f"0/{self.total}")
        self._show_budget(0, 0, {})

    def _fail(self, job: _Job, error: Exception) -> None:
        for pane in self.panes.values():
            if pane.streaming:
                pane.finish_reply(None, verdict="failed")
                pane.mark("failed")
        self.failed = True
        message = str(error) or type(error).__name__
        self.notify(f"{type(error).__name__}: {message}", title="The replay stopped", severity="error", timeout=12,
                    markup=False)
        self._end(job)

    def _end(self, job: _Job) -> None:
        """The command is over: run what waited for it, or open the summary when it replayed the last item."""
        self._job = None
        self._pump.pause()
        self.refresh_bindings()
        self.status_bar.set_info("item", f"{self.position}/{self.total}")
        self._set_state(self._idle_state())
        then, self._then = self._then, None
        if then is not None:
            then()
        elif job.stepped and self.position >= self.total:
            if isinstance(self.screen, SummaryScreen):
                self.pop_screen()
            self.action_summary()

    # ------------------------------------------------------------------------------------------ display
    def _active_panes(self) -> list[LanePane]:
        return [self.panes[name] for name in self.lanes]

    def _idle_state(self) -> str:
        if self.failed:
            return "stopped by an error · r restarts"
        if self.position >= self.total:
            return "finished"
        return "paused" if self.position else "ready"

    def _set_state(self, state: str) -> None:
        self.status_bar.set_info("state", state)

    def _show_budget(self, written: int, increment: int, diagnostics: dict[str, float] | None = None, *,
                     estimated: bool = False) -> None:
        self.meter.update(written, self.budget.horizon, increment, self.budget.status(written), diagnostics,
                          estimated=estimated)

    def _show_scores(self) -> None:
        """Each pane's running score in its border: hits over probes so far, and the mean F1."""
        summary = summarise(record.outcome for record in self.records if record.outcome is not None)
        for lane, score in summary.lanes.items():
            self.panes[lane].border_subtitle = f"recall {score.hits}/{score.probes} · F1 {score.mean_f1:.2f}"

    def _summary_view(self) -> SummaryView:
        return SummaryView(
            title=self.transcript_title,
            summary=summarise(record.outcome for record in self.records if record.outcome is not None),
            lanes=self.lanes, titles=self.titles, replayed=self.position, total=self.total, written=self.written,
            horizon=self.budget.horizon, status=self.budget.status(self.written),
        )

    # ------------------------------------------------------------------------------------------ reports
    def _write_report(self, report: Path | None, markdown: Path | None, failure: str) -> bool:
        """Write the report (partial unless every item was replayed); a failure is a notification."""
        try:
            built = build_report(self.runner, self.config, partial=not self.runner.finished)
            if report is not None:
                write_json(built, report)
            if markdown is not None:
                atomic_write_text(markdown, to_markdown(built))
        except Exception as exc:  # disk full, permissions, a folder where the file should be: the user's to fix
            self.notify(f"{type(exc).__name__}: {exc}", title=failure, severity="error", timeout=12, markup=False)
            return False
        return True
