"""The replay's scores on one screen: per-lane recall and F1, the memory written, and every probe answered.

Probes where the lanes disagree (one hit, one missed) come first: they are where δ-mem's memory made the
difference, or failed to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from deltamem_chat.scoring import ProbeOutcome, ScoreSummary
from deltamem_chat.text import one_line
from deltamem_chat.tui.commands import PaletteCommands
from deltamem_chat.tui.replay.commands import SUMMARY_COMMANDS

#: How long an answer may be on the summary before it is cut (the report keeps it whole).
ANSWER_CHARS = 200


@dataclass(frozen=True)
class SummaryView:
    """What the summary shows, gathered by the replay screen from the records it has seen (never from the running
    runner)."""

    title: str
    summary: ScoreSummary
    lanes: Sequence[str]
    titles: Mapping[str, str]
    replayed: int
    total: int
    written: int
    horizon: int
    status: str
    votes: Mapping[int, str] = field(default_factory=dict)   # probe index → the vote's label


def verdict_parts(hit: bool, f1: float) -> list[tuple[str, str]]:
    """`✓ hit` in green or `✗ miss` in red, then the F1."""
    mark = ("✓ hit ", "bold $success") if hit else ("✗ miss", "bold $error")
    return [mark, (f"  F1 {f1:.2f}", "")]


class SummaryScreen(Screen[None]):
    """Recall and mean F1 per lane, written tokens against the horizon, then the probes, differing ones first.

    Over the replay screen, which keeps running: exporting the report and quitting are passed down to it.
    """

    DEFAULT_CSS = """
    SummaryScreen #summary {
        padding: 0 1;
    }

    SummaryScreen #summary-heading {
        margin: 1 0;
    }

    SummaryScreen #summary-lanes {
        height: auto;
        margin-bottom: 1;
        padding: 0 1;
    }

    SummaryScreen #summary-probes {
        height: 1fr;
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }

    SummaryScreen .summary-probe {
        margin-top: 1;
        padding: 0 1;
        border-left: outer $primary 50%;
    }

    SummaryScreen .summary-probe.-differs {
        border-left: outer $warning;
    }

    SummaryScreen .summary-empty {
        margin-top: 1;
        color: $text-muted;
    }
    """

    COMMANDS = {PaletteCommands}
    PALETTE = SUMMARY_COMMANDS
    BINDINGS = [
        Binding("escape,s", "close", "back to the replay"),
        Binding("e", "export", "export"),
        Binding("q", "quit", "quit"),
    ]
    #: The actions the replay screen underneath runs.
    PASSED_DOWN = frozenset({"export", "quit"})

    def __init__(self, view: SummaryView, replay: Screen[Any]) -> None:
        super().__init__(id="summary-screen")
        self.view = view
        self.replay = replay

    def compose(self) -> ComposeResult:
        view = self.view
        with Vertical(id="summary"):
            yield Static(self._heading(), id="summary-heading")
            yield Static(self._lanes(), id="summary-lanes")
            with VerticalScroll(id="summary-probes") as probes:
                probes.border_title = "Probes · lanes that differ first"
                for outcome in view.summary.outcomes:
                    classes = "summary-probe -differs" if outcome.disagrees else "summary-probe"
                    yield Static(self._probe(outcome), classes=classes)
                if not view.summary.outcomes:
                    yield Static("No probe replayed yet.", classes="summary-empty")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.PASSED_DOWN:
            return self.replay.check_action(action, parameters)
        return True

    def action_close(self) -> None:
        self.dismiss(None)

    async def action_export(self) -> None:
        await self.replay.run_action("export")

    async def action_quit(self) -> None:
        await self.replay.run_action("quit")

    def _heading(self) -> Content:
        view = self.view
        state = "complete" if view.replayed >= view.total else "partial"
        return Content.assemble(("Replay summary", "bold"), " · ", (view.title, "bold $accent"),
                                (f" · {view.replayed}/{view.total} items ({state})", "dim"))

    def _lanes(self) -> Content:
        view = self.view
        parts: list[str | tuple[str, str]] = [(f"{'lane':<10}{'probes':>8}{'hits':>7}{'recall':>9}{'mean F1':>10}",
                                               "dim")]
        for lane in view.lanes:
            title = view.titles.get(lane, lane)
            score = view.summary.lanes.get(lane)
            row = (f"{score.probes:>8}{score.hits:>7}{score.recall:>9.3f}{score.mean_f1:>10.3f}" if score
                   else f"{'—':>8}{'—':>7}{'—':>9}{'—':>10}")
            parts += ["\n", (f"{title:<10}", "bold $accent"), row]
        note = "" if view.status == "ok" else " ⚠ past the trained horizon"
        parts += ["\n\n", ("δ-mem memory  ", "dim"), (f"{view.written:,} / {view.horizon:,}", "bold"),
                  " tokens written", (note, "bold $warning")]
        return Content.assemble(*parts)

    def _probe(self, outcome: ProbeOutcome) -> Content:
        titles = self.view.titles
        parts: list[str | tuple[str, str]] = []
        if outcome.disagrees:
            parts += [("⚑ lanes differ", "bold $warning"), "\n"]
        parts += [(f"Probe {outcome.probe_index + 1} · ", "dim"), (outcome.question, "bold"), "\n",
                  (f"{'expected':<10}", "dim"), outcome.expected]
        for lane, score in outcome.scores.items():
            parts += ["\n", (f"{titles.get(lane, lane):<10}", "bold $accent"), *verdict_parts(score.hit, score.f1),
                      "   ", one_line(outcome.answers[lane], ANSWER_CHARS) or ("(empty reply)", "dim")]
        vote = self.view.votes.get(outcome.probe_index)
        if vote:
            parts += ["\n", (f"{'vote':<10}", "dim"), (vote, "bold")]
        return Content.assemble(*parts)
