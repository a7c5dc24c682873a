"""A yes-or-no question before something that cannot be undone (deleting a session): y or Enter, n or Escape."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmDialog(ModalScreen[bool]):
    """Dismisses with True only when the user says yes; the default button is No."""

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog .dialog {
        width: 64;
        height: auto;
        border: round $warning;
        border-title-style: bold;
        background: $surface;
        padding: 1 2;
    }
    ConfirmDialog .dialog .buttons { height: auto; margin-top: 1; align-horizontal: right; }
    ConfirmDialog .dialog Button { margin-left: 1; }
    """

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, title: str, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.dialog_title = title
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = self.dialog_title
            yield Static(Content(self.question))
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("No", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
