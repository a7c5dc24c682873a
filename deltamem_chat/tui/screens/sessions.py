"""The session library on screen: every saved chat, newest first, searched as you type (titles and message text);
Enter reopens the highlighted one, Delete removes it after a question, Escape goes back."""

from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from deltamem_chat.library import LibraryEntry, LibraryError, SessionLibrary
from deltamem_chat.text import one_line
from deltamem_chat.tui.screens.confirm import ConfirmDialog


def _when(iso: str) -> str:
    """A saved time as the list shows it (`2025-01-31 23:59`), or as stored when it is not a time."""
    try:
        return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M}"
    except ValueError:
        return iso


class SessionsScreen(Screen[str | None]):
    """Lists the library; dismisses with the id of the session to reopen, or None."""

    DEFAULT_CSS = """
    SessionsScreen > Vertical { padding: 0 1; }
    SessionsScreen #sessions-title { text-style: bold; height: 1; }
    SessionsScreen #sessions-search { margin: 1 0 0 0; }
    SessionsScreen DataTable { height: 1fr; }
    SessionsScreen #sessions-count { height: 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("enter", "open", "open", priority=True),
        Binding("delete", "delete", "delete"),
        Binding("down", "to_list", "list", show=False),
    ]

    def __init__(self, library: SessionLibrary, current: str | None = None) -> None:
        """`current` is the open conversation's session: it cannot be deleted from under the chat."""
        super().__init__()
        self.library = library
        self.current = current
        self.entries: list[LibraryEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Sessions · {self.library.root}", id="sessions-title", markup=False)
            yield Input(placeholder="search titles and messages", id="sessions-search")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="sessions-list")
            yield Static("", id="sessions-count")
        yield Footer()

    @property
    def table(self) -> DataTable[str]:
        return self.query_one(DataTable)

    @property
    def search(self) -> Input:
        return self.query_one(Input)

    def on_mount(self) -> None:
        self.table.add_columns("title", "saved", "messages", "written", "base + adapter")
        self.search.focus()
        self.refresh_list()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        """The sessions matching the search, newest first."""
        self.entries = self.library.search(self.search.value)
        table = self.table
        table.clear()
        for entry in self.entries:
            mark = "● " if entry.session_id == self.current else ""
            table.add_row(mark + one_line(entry.title, 48), _when(entry.updated), str(entry.messages),
                          f"{entry.written:,}", one_line(f"{entry.base} + {entry.adapter}", 40),
                          key=entry.session_id)
        words = f" matching {self.search.value.strip()!r}" if self.search.value.strip() else ""
        count = f"{len(self.entries)} session{'s' if len(self.entries) != 1 else ''}{words}"
        self.query_one("#sessions-count", Static).update(
            count + " · enter reopens · delete removes · escape goes back" if self.entries else count)

    @property
    def highlighted(self) -> LibraryEntry | None:
        row = self.table.cursor_row
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def action_to_list(self) -> None:
        self.table.focus()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_open(self) -> None:
        entry = self.highlighted
        if entry is not None:
            self.dismiss(entry.session_id)

    def action_delete(self) -> None:
        entry = self.highlighted
        if entry is None:
            return
        if entry.session_id == self.current:
            self.notify("This is the open conversation: start a new one (ctrl+n) before deleting it.",
                        severity="warning")
            return
        question = f"Delete “{one_line(entry.title, 40)}” ({entry.messages} messages, saved {_when(entry.updated)})?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(entry)

        self.app.push_screen(ConfirmDialog("Delete session", question, yes="Delete"), answered)

    def _delete(self, entry: LibraryEntry) -> None:
        try:
            self.library.delete(entry.session_id)
        except LibraryError as exc:
            self.notify(str(exc), title="Could not delete", severity="error", markup=False)
        else:
            self.notify(f"Deleted “{one_line(entry.title, 40)}”.", markup=False)
        self.refresh_list()
