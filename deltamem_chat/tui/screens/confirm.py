"""A yes/no question before something that cannot be undone (dropping an unsaved conversation, overwriting a file)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmDialog(ModalScreen[bool]):
    """Dismisses with True for y (or the first button), False for n, Escape or the second button."""

    DEFAULT_CSS = """
    ConfirmDialog {
        align: center middle;
    }

    ConfirmDialog .dialog {
        width: 64;
        max-width: 100%;
        height: auto;
        border: round $warning;
        border-title-style: bold;
        background: $surface;
        padding: 1 2;
    }

    ConfirmDialog .dialog .buttons {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }

    ConfirmDialog .dialog Button {
        margin-left: 1;
    }
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
            yield Static(Content(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
