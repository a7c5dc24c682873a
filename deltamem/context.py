"""Context policies: what of the conversation goes into the prompt, and the write budget of the memory.

With the whole history in both prompts (`full`, the official chat) the frozen model can read every fact and
published re-runs found almost no difference between the lanes. A bounded window (`window N`) keeps only the
system prompt and the most recent whole messages that fit N tokens, for both lanes alike; the δ-mem lane also has
its memory of everything it has read, so whatever differs between the lanes is what the memory kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: The write length the released adapter was trained with; the paper has no evidence beyond it.
TRAINED_WRITE_HORIZON = 8192


class PolicyError(ValueError):
    """A context policy string we cannot read."""


@dataclass(frozen=True)
class ContextPolicy:
    """`full` (tokens is None) or a window of at most `tokens` tokens of recent messages."""

    tokens: int | None = None

    @property
    def is_full(self) -> bool:
        return self.tokens is None

    def __str__(self) -> str:
        return "full" if self.tokens is None else f"window:{self.tokens}"

    @classmethod
    def parse(cls, text: str | int | None) -> ContextPolicy:
        """Read `full`, `window:1024`, `window 1024`, `window=1024` or a bare number of tokens."""
        if text is None:
            return cls()
        if isinstance(text, int):
            return cls(_positive(text, str(text)))
        value = text.strip().lower()
        if value == "full":
            return cls()
        match = re.fullmatch(r"(?:window\s*[:= ]\s*)?([0-9]{1,9})", value)
        if not match:
            raise PolicyError(f'context policy "{text}": expected "full" or "window:N" (N tokens, e.g. window:1024)')
        return cls(_positive(int(match.group(1)), text))

    def select(self, lengths: Sequence[int], roles: Sequence[str]) -> list[int]:
        """Indices of the messages in the prompt: leading system messages, then the newest that fit.

        `lengths` are the messages' token counts. The newest message is always kept, even alone over budget, so
        there is always something to answer.
        """
        indices = list(range(len(lengths)))
        if self.tokens is None:
            return indices
        head = []
        for i in indices:
            if roles[i] != "system":
                break
            head.append(i)
        budget = self.tokens - sum(lengths[i] for i in head)
        tail: list[int] = []
        for i in reversed(indices[len(head):]):
            if tail and lengths[i] > budget:
                break
            tail.append(i)
            budget -= lengths[i]
        return head + tail[::-1]


def _positive(value: int, text: str) -> int:
    if value < 1:
        raise PolicyError(f'context policy "{text}": the window must hold at least one token')
    return value


@dataclass(frozen=True)
class WriteBudget:
    """Tokens written into memory since the last reset, against the horizon the adapter was trained with."""

    horizon: int = TRAINED_WRITE_HORIZON
    stop_at_horizon: bool = False

    def status(self, written: int) -> str:
        """`ok`, `warning` (past the trained horizon) or `stopped` (past it, and writes are being refused)."""
        if written < self.horizon:
            return "ok"
        return "stopped" if self.stop_at_horizon else "warning"

    def allows_writes(self, written: int) -> bool:
        return not (self.stop_at_horizon and written >= self.horizon)
