"""The replay screen: a saved transcript fed to the lanes item by item, with its probes scored.

The frame (`LanesScreen`) shows the lanes, the meter and the streaming; the replay adds its commands (step, play,
jump, restart), the probes' verdicts and scores, the summary and the reports. One worker drives the runner per
command. While a command runs, the UI never touches the runner or the engine: it keeps its own list of finished
records for the scores, the votes (f8, on the latest probe or generated answer, as in the chat) and the summary,
gets the memory after each item from what the engine reported to the runner (`Stepped`), and writes reports only
once no command runs (quitting stops the running one first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from textual.binding import Binding
from textual.content import Content
from textual.widgets import Static

from deltamem.files import atomic_write_text
from deltamem.runtime.contract import LaneDone, SessionIdentity, TurnStats
from deltamem_chat.replay import ReplayRunner, StepFinished, StepRecord, StepStarted, build_report, to_markdown
from deltamem_chat.replay.memory_svg import write_memory_svg
from deltamem_chat.replay.report import write_json
from deltamem_chat.scoring import ProbeScore, summarise
from deltamem_chat.text import stamp
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.messages import FeedItem, Restarted, Stepped
from deltamem_chat.tui.replay.commands import REPLAY_COMMANDS
from deltamem_chat.tui.replay.summary import SummaryScreen, SummaryView
from deltamem_chat.tui.screens import PromptDialog
from deltamem_chat.tui.votes import TurnVotes
from deltamem_chat.tui.widgets import Reply


@dataclass
class Command(Job):
    """A replay command in flight: how far it replays, and stopping after the current item (`p`) as well as now."""

    kind: str = "step"             # "step", "play", "jump" or "restart"
    target: int = 0                # replay until this many items are done
    restart: bool = False          # restart the runner first
    pause: threading.Event = field(default_factory=threading.Event)
    stepped: int = 0


def _short(model: str) -> str:
    """A model's last path part: the status line has room for names, not for folders."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def probe_verdict(score: ProbeScore, expected: str) -> str:
    """The line under a probe's answer: hit or miss, token F1, and what the transcript expected."""
    return f"{'✓ hit' if score.hit else '✗ miss'} · F1 {score.f1:.2f} · expected: {expected}"


class ReplayScreen(LanesScreen[Command]):
    """A transcript replayed through the lanes side by side, stepping, playing or jumping."""

    TITLE = "deltamem-chat replay"
    PALETTE = REPLAY_COMMANDS
    BUSY_ACTIONS = frozenset({"step", "jump", "export"})
    FAILURE_TITLE = "The replay stopped"
    STATUS_CLASSES = "-clipped"
    BINDINGS = [
        Binding("n", "step", "step"),
        Binding("space", "step", "step", show=False),
        Binding("p", "play", "play/pause"),
        Binding("j", "jump", "jump to"),
        Binding("r", "restart", "restart"),
        Binding("escape", "cancel", "stop"),
        Binding("f8", "vote", "vote"),
        Binding("s", "summary", "summary"),
        Binding("e", "export", "export"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, runner: ReplayRunner, config: dict[str, Any], *, identity: SessionIdentity,
                 report_path: Path | None = None, markdown_path: Path | None = None) -> None:
        """`config` is the report's config block; `report_path`/`markdown_path` also get a report on quit."""
        super().__init__(runner.engine)
        self.runner = runner
        self.config = config
        self.report_path = report_path
        self.markdown_path = markdown_path
        # Read once, before any worker starts; none of them changes during the replay.
        self.lanes = list(runner.lanes)
        self.total = len(runner.transcript.items)
        self.regenerate = runner.regenerate
        self.transcript_title = str(config.get("title") or Path(str(config.get("transcript", "transcript"))).name)
        # The UI's own copy of the progress, updated from the feed: the runner's belongs to the worker.
        self.records: list[StepRecord] = list(runner.records)
        self.position = runner.position
        self.failed = False
        self.info.update({
            "item": f"{self.position}/{self.total}", "state": self._idle_state(), "transcript": self.transcript_title,
            "models": f"{_short(identity.base)} + {_short(identity.adapter)}",
            "device": f"{config.get('device', '?')} · {config.get('dtype', '?')}",
            "policy": str(config.get("context_policy", "?")),
        })
        self.votes = TurnVotes({name: self.titles[name] for name in self.lanes})
        self._answers: dict[int, dict[str, Reply | None]] = {}  # each answered item's replies, for its vote line
        self._then: Callable[[], None] | None = None
        self._stats: dict[str, TurnStats] = {}
        self._quit_without_report = False

    def on_mount(self) -> None:
        panes, status = self.panes, self.status
        for name, pane in panes.items():
            if name not in self.lanes:
                pane.set_paused(True)
                pane.border_subtitle = "off · replay with --ab to compare"
                pane.add_note(f"The {self.titles[name]} lane sits out this replay: run it with --ab to see both.")
                status.set_paused(name, True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "play" and self.job is not None and self.job.kind != "play":
            return None
        if action == "vote" and self._votable() is None:
            return None
        return super().check_action(action, parameters)

    # ------------------------------------------------------------------------------------------ commands
    def action_step(self) -> None:
        if not self.busy and self._can_go_on():
            self._start("step", self.position + 1)

    def action_play(self) -> None:
        """Play to the end, or, while playing, pause after the current item."""
        if self.job is not None:
            if self.job.kind == "play":
                self.job.pause.set()
                self._set_state("pausing after this item")
            return
        if self._can_go_on():
            self._start("play", self.total)

    def action_jump(self) -> None:
        if self.busy:
            return
        question = (f"Replay until this many of the {self.total} items are done (0 to {self.total}). "
                    "An earlier point restarts from the first item.")
        self.app.push_screen(PromptDialog("Jump to item", question, str(self.position)), self._jump)

    def _jump(self, answer: str | None) -> None:
        if answer is None or self.busy:
            return
        target = int(answer) if answer.isascii() and answer.isdigit() else -1  # not '²', which int refuses
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
        if self.job is None:
            self._start("restart", 0, restart=True)
            return
        self._stop(self.job, "stopping, then restarting")
        self._then = lambda: self._start("restart", 0, restart=True)

    def action_cancel(self) -> None:
        """Stop the answer being generated (it stays, marked cancelled) and stop playing or jumping."""
        if self.job is not None:
            self._stop(self.job, "stopping")

    def action_vote(self) -> None:
        """Vote on the latest answered item (a probe, or an assistant turn the lanes generated)."""
        record = self._votable()
        if record is None:
            return
        if len(self.lanes) < 2:
            self.notify("A vote compares lanes: replay with --ab to vote.", severity="warning")
            return
        what = self._vote_subject(record)

        def voted(choice: str) -> None:
            self.status.set_note(self.votes.note())
            self.votes.mark(record.index, ((self.panes[lane], reply)
                                           for lane, reply in self._answers[record.index].items()))
            self.notify(f"{what[0].upper()}{what[1:]}: {self.votes.labels[choice]}.")

        self.votes.ask(self, record.index, what, voted)

    def _votable(self) -> StepRecord | None:
        """The latest finished item the lanes answered, if any."""
        return next((record for record in reversed(self.records) if record.index in self._answers), None)

    def _vote_subject(self, record: StepRecord) -> str:
        """How the vote's dialog names an item: `probe 2 (item 6)`, `item 4`."""
        if record.outcome is not None:
            return f"probe {record.outcome.probe_index + 1} (item {record.index + 1})"
        return f"item {record.index + 1}"

    def action_summary(self) -> None:
        self.app.push_screen(SummaryScreen(self._summary_view(), self))

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
        if self.job is not None:
            self._stop(self.job, "stopping, then quitting")
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
        self.app.exit(return_code=1 if self._quit_without_report else 0)

    def _can_go_on(self) -> bool:
        """Whether stepping forward makes sense; says why not."""
        if self.failed:
            self.notify("The replay stopped at an error: r restarts, j replays up to an item.", severity="warning")
        elif self.position >= self.total:
            self.notify("The transcript is done: s shows the summary, r restarts, j jumps back.")
        return not self.failed and self.position < self.total

    def _start(self, kind: str, target: int, *, restart: bool = False) -> None:
        command = Command(0 if restart else self.written, kind=kind, target=target, restart=restart)
        states = {"step": "stepping", "play": "playing", "jump": f"jumping to {target}", "restart": "restarting"}
        self._set_state(states[kind])
        self.start(command, self._drive)

    def _stop(self, command: Command, state: str) -> None:
        command.cancel.set()
        self._set_state(state)

    # ------------------------------------------------------------------------------------------ worker
    def _drive(self, command: Command) -> None:
        """On the worker thread: run one command on the runner, reporting each item's memory as the engine left it."""
        runner = self.runner
        if command.restart:
            runner.restart()
            self.feed.put(Restarted())
        while (runner.position < command.target and not runner.finished
               and not command.cancel.is_set() and not command.pause.is_set()):
            for event in runner.step(command.cancel):
                if isinstance(event, StepFinished):
                    memory = event.memory
                    self.feed.put(Stepped(event.record, dict(memory.written_total), dict(memory.diagnostics)))
                else:
                    self.feed.put(event)

    # ------------------------------------------------------------------------------------------ feed
    def apply(self, job: Command, item: FeedItem) -> None:
        if isinstance(item, StepStarted):
            self._begin(item.record)
        elif isinstance(item, LaneDone):
            self._stats[item.lane] = item.stats
        elif isinstance(item, Stepped):
            self._finish(job, item)
        elif isinstance(item, Restarted):
            self._clear(job)

    def _begin(self, record: StepRecord) -> None:
        """Show an item as it is fed: messages at once, replies opened for streaming."""
        self._stats.clear()
        self.status.set_info("item", f"{record.index + 1}/{self.total}")
        probe_number = sum(done.kind == "probe" for done in self.records) + 1
        panes = self.panes
        for pane in (panes[name] for name in self.lanes):
            if record.kind == "probe":
                pane.add_note(f"probe {probe_number} · asked here, then rolled back")
                pane.add_user(record.text)
                pane.start_reply()
                self._answers.setdefault(record.index, {})[pane.lane] = pane.latest
            elif record.role == "system":
                pane.add_note(f"system: {record.text}")
            elif record.role == "user":
                pane.add_user(record.text)
            elif self.regenerate:
                pane.start_reply()
                self._answers.setdefault(record.index, {})[pane.lane] = pane.latest
            else:
                pane.start_reply(record.text)
                pane.finish_reply(None, verdict="recorded, fed as written")
                pane.mark("recorded")

    def _finish(self, command: Command, item: Stepped) -> None:
        """Close an item's replies with their stats and verdicts; flag where the lanes differ; exact meter."""
        record, outcome = item.record, item.record.outcome
        self.records.append(record)
        self.position = record.index + 1
        command.stepped += 1
        panes = self.panes
        for lane, step in record.lanes.items():
            pane = panes[lane]
            stats = self._stats.get(lane)
            if outcome is not None:
                score = outcome.scores[lane]
                # A probe's writes are rolled back with it: showing them would contradict the meter.
                verdict = probe_verdict(score, outcome.expected)
                if step.evidence is not None:
                    verdict += f" · evidence {step.evidence}"
                pane.finish_reply(replace(stats, written=0) if stats else None, verdict=verdict, text=step.text)
                pane.mark("good" if score.hit else "bad")
            elif pane.streaming:
                pane.finish_reply(stats, text=step.text)
            if record.differs:
                pane.mount(Static(Content("⚑ lanes differ"), classes="note flag"))
        if outcome is not None:
            self._show_scores()
        command.label = f"probe: {record.text}" if record.kind == "probe" else record.text
        self.show_reported(command, item.written_total, item.diagnostics)
        if command.kind == "jump":
            self._set_state(f"jumping to {command.target} · {self.position}/{command.target}")

    def _clear(self, command: Command) -> None:
        """The runner restarted: empty panes, scores and meter."""
        self.records.clear()
        self.votes.cast.clear()
        self._answers.clear()
        self.status.set_note("")
        self.position = command.written_before = 0
        self.failed = False
        panes, status = self.panes, self.status
        for name in self.lanes:
            panes[name].clear()
            panes[name].border_subtitle = ""
            status.set_lane(name, None)
        status.set_info("item", f"0/{self.total}")
        self.show_budget(0, 0, {})
        self.memory_panel.clear()

    def job_failed(self, job: Command) -> None:
        self.failed = True

    def job_ended(self, job: Command) -> None:
        """Run what waited for the command, or open the summary when it replayed the last item."""
        self.status.set_info("item", f"{self.position}/{self.total}")
        self._set_state(self._idle_state())
        then, self._then = self._then, None
        if then is not None:
            then()
        elif job.stepped and self.position >= self.total:
            if isinstance(self.app.screen, SummaryScreen):
                self.app.pop_screen()
            self.action_summary()

    # ------------------------------------------------------------------------------------------ display
    def _idle_state(self) -> str:
        if self.failed:
            return "stopped by an error · r restarts"
        if self.position >= self.total:
            return "finished"
        return "paused" if self.position else "ready"

    def _set_state(self, state: str) -> None:
        self.status.set_info("state", state)

    def _show_scores(self) -> None:
        """Each pane's running score in its border: hits over probes so far, and the mean F1."""
        summary = summarise(record.outcome for record in self.records if record.outcome is not None)
        panes = self.panes
        for lane, score in summary.lanes.items():
            panes[lane].border_subtitle = f"recall {score.hits}/{score.probes} · F1 {score.mean_f1:.2f}"

    def _summary_view(self) -> SummaryView:
        return SummaryView(
            title=self.transcript_title,
            summary=summarise(record.outcome for record in self.records if record.outcome is not None),
            lanes=self.lanes, titles=self.titles, replayed=self.position, total=self.total, written=self.written,
            horizon=self.budget.horizon, status=self.budget.status(self.written),
            votes={record.outcome.probe_index: self.votes.labels[self.votes.cast[record.index]]
                   for record in self.records if record.outcome is not None and record.index in self.votes.cast},
        )

    # ------------------------------------------------------------------------------------------ reports
    def _write_report(self, report: Path | None, markdown: Path | None, failure: str) -> bool:
        """Write the report (partial unless every item was replayed); a failure is a notification."""
        try:
            built = build_report(self.runner, self.config, partial=not self.runner.finished, votes=self.votes.cast)
            if report is not None:
                write_json(built, report)
            if markdown is not None:
                picture = write_memory_svg(built, markdown)   # first: the report's link never points at nothing
                atomic_write_text(markdown, to_markdown(built, picture.name if picture else None))
        except Exception as exc:  # disk full, permissions, a folder where the file should be: the user's to fix
            self.report_error(failure, exc)
            return False
        return True
