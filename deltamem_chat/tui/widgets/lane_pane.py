"""One lane's conversation: a scrollable column of user messages and replies, streamed into as tokens arrive.

Reusable outside the chat (the replay screen drives it the same way): `add_user`, `start_reply`, `append`,
`finish_reply`, `mark`, `show_vote`. Replies are Markdown (`Reply`), or their raw text on `set_raw`; nothing the
model says is ever parsed as Textual markup.
A retrieval lane's reply is followed by what was retrieved into its prompt for it, collapsed.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Collapsible, Static

from deltamem.runtime.contract import TurnStats
from deltamem_chat.tui.diff import Span
from deltamem_chat.tui.widgets.reply import Reply

#: How much of a very long user message a pane shows (the lanes read it all).
SHOWN_CHARS = 2_000


class LanePane(VerticalScroll):
    """A lane's side of the conversation, titled with the lane's name; follows the stream while at the bottom.

    A lane with memory is framed in the accent colour; `mark` styles replies by their verdict.
    """

    DEFAULT_CSS = """
    LanePane {
        width: 1fr;
        height: 1fr;
        border: round $primary;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }

    LanePane.-memory {
        border: round $accent;
    }

    LanePane.-paused {
        border: round $panel-lighten-2;
        color: $text-muted;
    }

    LanePane .user {
        margin-top: 1;
        padding: 0 1;
        background: $boost;
        text-style: bold;
    }

    LanePane .reply {
        margin-top: 1;
        padding: 0 1;
        border-left: outer $primary 50%;
    }

    LanePane .reply.-recorded {
        border-left: outer $secondary 50%;
    }

    LanePane .reply.-cancelled {
        border-left: outer $warning;
    }

    LanePane .reply.-failed,
    LanePane .reply.-bad {
        border-left: outer $error;
    }

    LanePane .reply.-good {
        border-left: outer $success;
    }

    LanePane .meta {
        padding: 0 1;
        color: $text-muted;
        text-style: italic;
    }

    LanePane .note {
        margin-top: 1;
        color: $text-muted;
        text-align: center;
    }

    LanePane Collapsible {
        padding: 0;
        margin: 0;
        border-top: none;
        background: transparent;
        color: $text-muted;
    }

    LanePane .retrieved {
        padding: 0 1;
        color: $text-muted;
    }

    LanePane .meta.vote {
        color: $accent;
        text-style: bold;
    }

    LanePane .note.flag {
        color: $warning;
        text-style: bold;
    }
    """

    def __init__(self, lane: str, title: str, *, memory: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, classes="lane-pane -memory" if memory else "lane-pane")
        self.lane = lane
        self.border_title = title
        self._reply: Reply | None = None
        self._last: Reply | None = None
        self._votes: dict[Reply, Static] = {}  # each voted reply's vote line
        self.raw = False

    def on_mount(self) -> None:
        # Anchored: stays at the bottom as text arrives, until the reader scrolls up (and again once back down).
        self.anchor()

    @property
    def streaming(self) -> bool:
        """Whether a reply is open for `append`."""
        return self._reply is not None

    @property
    def latest(self) -> Reply | None:
        """The latest reply (streaming or done), as a widget."""
        return self._last

    @property
    def last_reply(self) -> str:
        """The text of the latest reply ('' when there is none)."""
        return self._last.text if self._last else ""

    def add_user(self, text: str) -> None:
        """A user's message; a very long one (a pasted document) shows its start and its length, not all of it."""
        if len(text) > SHOWN_CHARS:
            text = f"{text[:SHOWN_CHARS]}\n… {len(text):,} characters in all"
        self.mount(Static(Content(text), classes="user"))

    def add_assistant(self, text: str) -> None:
        """A finished reply without stats (a loaded session, a recorded transcript)."""
        self._last = Reply(text, raw=self.raw)
        self.mount(self._last)

    def add_note(self, text: str) -> None:
        """A line about the conversation rather than in it (memory reset, lane paused)."""
        self.mount(Static(Content(text), classes="note"))

    def start_reply(self, text: str = "") -> None:
        self._reply = self._last = Reply(text, raw=self.raw, streaming=True)
        self.mount(self._reply)

    async def append(self, text: str) -> None:
        if self._reply is not None and text:
            await self._reply.append(text)

    def finish_reply(self, stats: TurnStats | None, verdict: str | None = None, *, text: str | None = None) -> None:
        """Close the open reply with its stats line; a cancelled reply keeps its text and is marked so.

        `text` is the reply's final text when known: it may end with a partial character the stream held back.
        """
        if self._reply is None:
            return
        reply, self._reply = self._reply, None
        reply.finish(text)
        parts = []
        if stats is not None:
            parts.append(f"{stats.tokens} tokens")
            if stats.written:
                parts.append(f"{stats.written} written")
            if stats.rebuilt:
                parts.append("cache rebuilt")
            if stats.cancelled:
                parts.append("cancelled")
                reply.add_class("-cancelled")
        if not reply.text:
            parts.insert(0, "(empty reply)")
        if verdict:
            parts.append(verdict)
        if parts:
            self.mount(Static(Content(" · ".join(parts)), classes="meta"))
        if stats is not None and stats.retrieved:
            self.add_retrieved(stats.retrieved)

    def add_retrieved(self, retrieved: list[dict[str, str]]) -> None:
        """What retrieval put back into the prompt for the reply above, collapsed under a one-line title."""
        lines = "\n".join(f"{r['role']}: {' '.join(r['content'].split())}" for r in retrieved)
        title = f"retrieved {len(retrieved)} message{'s' if len(retrieved) != 1 else ''}"
        self.mount(Collapsible(Static(Content(lines), classes="retrieved"), title=title, collapsed=True))

    def mark(self, style: str) -> None:
        """Style the latest reply: `recorded`, `cancelled`, `failed`, `good` and `bad` have their colours."""
        if self._last is not None:
            self._last.add_class(f"-{style}")

    def show_vote(self, text: str, reply: Reply | None = None) -> None:
        """A vote's line under `reply` (the latest by default), after its stats; a later vote replaces it."""
        reply = reply or self._last
        if reply is None or reply.parent is not self:
            return
        if reply in self._votes:
            self._votes[reply].update(Content(text))
            return
        children = list(self.children)
        after = children.index(reply) + 1
        anchor = children[after] if after < len(children) and children[after].has_class("meta") else reply
        self._votes[reply] = line = Static(Content(text), classes="meta vote")
        self.mount(line, after=anchor)

    def clear(self) -> None:
        self._reply = self._last = None
        self._votes.clear()
        self.remove_children()

    def drop_last_turn(self) -> None:
        """Remove the latest user message and everything after it (a turn about to be asked again)."""
        children = list(self.children)
        users = [index for index, child in enumerate(children) if child.has_class("user")]
        if not users:
            return
        self.remove_children(children[users[-1]:])
        self._votes = {reply: line for reply, line in self._votes.items() if reply in children[:users[-1]]}
        self._reply = None
        replies = [child for child in children[:users[-1]] if isinstance(child, Reply)]
        self._last = replies[-1] if replies else None

    def set_raw(self, raw: bool) -> None:
        """Show every reply as raw text (True) or as Markdown."""
        self.raw = raw
        for reply in self.query(Reply):
            reply.set_raw(raw)

    def mark_last(self, marks: list[Span] | None) -> None:
        """Diff marks on the latest reply (None: no diff view)."""
        if self._last is not None:
            self._last.set_marks(marks)

    def clear_marks(self) -> None:
        for reply in self.query(Reply):
            reply.set_marks(None)

    def set_paused(self, paused: bool) -> None:
        """Show that this lane sits out the coming turns."""
        self.set_class(paused, "-paused")
        self.border_subtitle = "paused · ctrl+f resumes" if paused else ""
