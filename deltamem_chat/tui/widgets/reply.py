"""An assistant reply: Markdown as it streams (code highlighted), or its raw text, or its raw text with the words the
other lane did not say marked.

Streaming goes through Textual's `MarkdownStream`, which parses only the blocks that changed and joins fragments that
come faster than it can render, so a long reply does not cost a full re-render per token.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from deltamem_chat.tui.diff import Span

#: How a word the other lane did not say is shown.
DIFF_STYLE = "bold $text-warning on $warning 25%"


class Reply(Vertical):
    """A reply's text (`text`, always the whole of it) shown as Markdown, or raw, or raw with diff marks."""

    DEFAULT_CSS = """
    Reply {
        height: auto;
    }

    Reply > Markdown {
        margin: 0;
        padding: 0;
    }

    Reply > Markdown > MarkdownBlock:last-child {
        margin-bottom: 0;
    }
    """

    def __init__(self, text: str = "", *, raw: bool = False, streaming: bool = False) -> None:
        super().__init__(classes="reply")
        self.text = text
        self.raw = raw
        self.marks: list[Span] | None = None
        self._streaming = streaming
        self._stream: MarkdownStream | None = None
        self._sent = 0  # characters of `text` handed to the Markdown widget

    def compose(self) -> ComposeResult:
        yield Markdown(self.text if not self._streaming else None)
        yield Static(Content(self.text), classes="raw")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    @property
    def plain(self) -> Static:
        return self.query_one(".raw", Static)

    async def on_mount(self) -> None:
        self._sent = 0 if self._streaming else len(self.text)
        if self._streaming:
            self._stream = Markdown.get_stream(self.markdown)
        self._show()
        await self._flush()

    async def append(self, text: str) -> None:
        self.text += text
        await self._flush()
        if self.raw or self.marks is not None:
            self.plain.update(self._plain_content())

    async def _flush(self) -> None:
        if self._stream is not None and self._sent < len(self.text):
            fragment, self._sent = self.text[self._sent:], len(self.text)
            await self._stream.write(fragment)

    def finish(self, text: str | None = None) -> None:
        """The reply is complete (`text` its final form, when the stream held back a partial character)."""
        if text is not None:
            self.text = text
        self._streaming = False
        self.call_later(self._close)

    async def _close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()
        if self._sent != len(self.text) or self.markdown.source != self.text:
            self._sent = len(self.text)
            await self.markdown.update(self.text)
        self._show()

    def set_text(self, text: str) -> None:
        """Replace the whole text (a finished reply)."""
        self.text, self._sent = text, len(text)
        self.markdown.update(text)
        self._show()

    def set_raw(self, raw: bool) -> None:
        self.raw = raw
        self._show()

    def set_marks(self, marks: list[Span] | None) -> None:
        """Mark these spans (the diff view shows the raw text with them), or None for no diff view."""
        self.marks = marks
        self._show()

    def _plain_content(self) -> Content:
        content = Content(self.text)
        for start, end in self.marks or ():
            content = content.stylize(DIFF_STYLE, start, end)
        return content

    def _show(self) -> None:
        plain = self.raw or self.marks is not None
        self.markdown.display = not plain
        self.plain.display = plain
        if plain:
            self.plain.update(self._plain_content())
