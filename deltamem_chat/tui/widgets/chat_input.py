"""The message box: one multi-line input under the panes, with ↑/↓ recalling earlier messages (handy for re-asking).

A pasted text keeps its lines; Enter sends, Shift+Enter (or Ctrl+J, where the terminal cannot tell Shift+Enter from
Enter) starts a new line.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.message import Message
from textual.widgets import TextArea

#: Keys that start a new line instead of sending.
NEWLINE_KEYS = frozenset({"shift+enter", "ctrl+j", "alt+enter"})


class ChatInput(TextArea):
    """Enter sends the text to every active lane; ↑ on the first line and ↓ on the last walk through what was sent."""

    DEFAULT_CSS = """
    ChatInput {
        height: auto;
        max-height: 8;
        margin: 0;
    }
    """

    @dataclass
    class Submitted(Message):
        """Enter was pressed: `value` is the whole text, lines and all."""

        input: ChatInput
        value: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, highlight_cursor_line=False,
                         compact=True)
        self.sent: list[str] = []  # what was sent, oldest first (TextArea.history is its undo)
        self._position = 0

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def remember(self, text: str) -> None:
        """Record a sent message and go back to an empty box."""
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._position = len(self.sent)
        self.value = ""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
        elif event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
        elif event.key == "up" and self.cursor_location[0] == 0:
            event.stop()
            event.prevent_default()
            self.recall(-1)
        elif event.key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            event.stop()
            event.prevent_default()
            self.recall(1)
        else:
            await super()._on_key(event)

    def recall(self, step: int) -> None:
        """The previous (-1) or next (1) message sent; past the newest, an empty box."""
        self._position = max(0, min(len(self.sent), self._position + step))
        self.value = self.sent[self._position] if self._position < len(self.sent) else ""


def placeholder(active: list[str], paused: list[str]) -> str:
    """What the empty box says: which lanes (by title) a message goes to, and which sit it out."""
    if not paused:
        to = "both lanes" if len(active) == 2 else "every lane"
    else:
        to = f"{' and '.join(active)} alone ({' and '.join(paused)} paused)"
    return f"Message {to} · Enter sends, Shift+Enter or Ctrl+J a new line"
