"""Votes in the views, the same in the chat and the replay: a key opens the choices for a turn, the vote is shown
under the turn's replies and tallied in the status bar. The rules (choices, tally, the saved form) are
`deltamem_chat.votes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from textual.screen import Screen

from deltamem_chat.tui.screens import ChoiceDialog
from deltamem_chat.tui.widgets import LanePane, Reply
from deltamem_chat.votes import TIE, WRONG, choices, tally


class TurnVotes:
    """A view's votes: turn number → choice, among the choices its lanes give."""

    def __init__(self, titles: Mapping[str, str]) -> None:
        self.labels = choices(titles)
        # The status bar's: the lanes' titles alone ("δ-mem 2"), so the tally fits beside the lanes' speeds.
        self.short = {**titles, TIE: self.labels[TIE], WRONG: self.labels[WRONG]}
        self.cast: dict[int, str] = {}

    def ask(self, screen: Screen[object], turn: int, what: str, voted: Callable[[str], None]) -> None:
        """Offer the choices for `turn` (`what` names it in the dialog's title); a choice is kept, then
        `voted(choice)` shows it."""

        def chosen(choice: str | None) -> None:
            if choice is not None:
                self.cast[turn] = choice
                voted(choice)

        screen.app.push_screen(ChoiceDialog(f"Vote on {what}", "Which lane answered better?", self.labels), chosen)

    def note(self) -> str:
        """The status bar's tally, `votes: frozen 0 · δ-mem 2 · tie 1 · both wrong 0` ('' before the first vote)."""
        return f"votes: {tally(self.cast, self.short)}" if self.cast else ""

    def line(self, turn: int) -> str:
        """What a voted turn shows under its replies."""
        return f"vote: {self.labels[self.cast[turn]]}"

    def labelled(self) -> dict[int, str]:
        """Turn number → the vote's label, in turn order (for an export)."""
        return {turn: self.labels[choice] for turn, choice in sorted(self.cast.items())}

    def mark(self, turn: int, replies: Iterable[tuple[LanePane, Reply | None]]) -> None:
        """Show the vote on `turn` under each of its replies (the pane's latest where the reply is None)."""
        for pane, reply in replies:
            pane.show_vote(self.line(turn), reply)
