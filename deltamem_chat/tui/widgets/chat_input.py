"""The message line: one input under both panes, with ↑/↓ recalling earlier messages (handy for re-asking)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class ChatInput(Input):
    """Enter sends the line to every active lane; ↑ and ↓ walk through what was sent before."""

    DEFAULT_CSS = """
    ChatInput {
        margin: 0;
    }
    """

    BINDINGS = [
        Binding("up", "history(-1)", "previous", show=False),
        Binding("down", "history(1)", "next", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="Message both lanes · Enter sends", id=id)
        self.history: list[str] = []
        self._position = 0

    def remember(self, text: str) -> None:
        """Record a sent message and go back to an empty line."""
        if not self.history or self.history[-1] != text:
            self.history.append(text)
        self._position = len(self.history)
        self.value = ""

    def action_history(self, step: int) -> None:
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = self.history[self._position] if self._position < len(self.history) else ""
        self.cursor_position = len(self.value)
