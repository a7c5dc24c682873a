"""A one-line question in a dialog (a folder to save to, a context policy): Enter answers, Escape backs out."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class PromptDialog(ModalScreen[str | None]):
    """Ask for one value; dismisses with the stripped text, or None when cancelled or left empty."""

    DEFAULT_CSS = """
    PromptDialog {
        align: center middle;
    }

    PromptDialog .dialog {
        width: 72;
        height: auto;
        border: round $primary;
        border-title-style: bold;
        background: $surface;
        padding: 1 2;
    }

    PromptDialog .dialog .question {
        margin-bottom: 1;
    }

    PromptDialog .dialog .buttons {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }

    PromptDialog .dialog Button {
        margin-left: 1;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, question: str, value: str = "") -> None:
        super().__init__()
        self.dialog_title = title
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = self.dialog_title
            yield Static(Content(self.question), classes="question")
            yield Input(self.value, id="answer")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._answer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._answer()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @property
    def answer(self) -> Input:
        return self.query_one("#answer", Input)

    def _answer(self) -> None:
        self.dismiss(self.answer.value.strip() or None)
