"""Votes on turns: which lane answered better, kept per turn in the session, the reports, the export and the status
bar (the chat's and the replay's: `deltamem_chat.tui.votes` asks for them).

The choices follow the lanes: one "better" per lane, then a tie and "both wrong" (none right, with more than two
lanes). In the chat a vote is keyed by the turn's number (its count of replies), so a retried turn drops its old
vote; in a replay by the item's number (from 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

TIE = "tie"
WRONG = "wrong"


class VoteError(ValueError):
    """A session's votes are not what a save writes; the message names the field."""


def choices(titles: Mapping[str, str]) -> dict[str, str]:
    """Every vote's id and label, in the order they are offered (keys 1, 2, …)."""
    labels = {name: f"{title} better" for name, title in titles.items()}
    return labels | {TIE: "tie", WRONG: "both wrong" if len(titles) == 2 else "none right"}


def counts(votes: Mapping[int, str], labels: Mapping[str, str]) -> dict[str, int]:
    """How many votes each choice got, every choice listed in order (none cast: all 0)."""
    cast = Counter(votes.values())
    return {choice: cast[choice] for choice in labels}


def tally(votes: Mapping[int, str], labels: Mapping[str, str]) -> str:
    """`δ-mem better 2 · frozen better 1 · tie 0 · both wrong 0`."""
    return " · ".join(f"{labels[choice]} {count}" for choice, count in counts(votes, labels).items())


def to_saved(votes: Mapping[int, str]) -> dict[str, str]:
    """Votes as a session's JSON holds them (object keys are strings)."""
    return {str(turn): choice for turn, choice in sorted(votes.items())}


def from_saved(saved: object, labels: Mapping[str, str]) -> dict[int, str]:
    """A session's `votes`, checked: turn numbers from 1, choices among `labels`."""
    if saved is None:
        return {}
    if not isinstance(saved, dict):
        raise VoteError("the session's votes: expected an object of turn numbers")
    votes: dict[int, str] = {}
    for turn, choice in saved.items():
        if not (isinstance(turn, str) and turn.isascii() and turn.isdigit() and int(turn) > 0):
            raise VoteError(f"the session's votes: {turn!r} is not a turn number")
        if choice not in labels:
            raise VoteError(f"the session's votes, turn {turn}: {choice!r} is not one of {', '.join(labels)}")
        votes[int(turn)] = choice
    return votes
