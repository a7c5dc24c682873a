"""A choice among a few answers, each with a number key (a vote on a turn)."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ChoiceDialog(ModalScreen[str | None]):
    """Dismisses with the chosen id (keys 1…9 or a button), None on Escape."""

    DEFAULT_CSS = """
    ChoiceDialog {
        align: center middle;
    }

    ChoiceDialog .dialog {
        width: 48;
        max-width: 100%;
        height: auto;
        border: round $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }

    ChoiceDialog .dialog Button {
        width: 100%;
        margin-top: 1;
    }
    """

    BINDINGS = [Binding("escape", "choose(-1)", "cancel")] + [
        Binding(str(number), f"choose({number - 1})", show=False) for number in range(1, 10)]

    def __init__(self, title: str, question: str, options: Mapping[str, str]) -> None:
        super().__init__()
        self.dialog_title = title
        self.question = question
        self.options = dict(options)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = self.dialog_title
            yield Static(Content(self.question), classes="question")
            for number, label in enumerate(self.options.values(), start=1):
                yield Button(f"{number}  {label}", id=f"choice-{number - 1}", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose(int(str(event.button.id).rsplit("-", 1)[1]))

    def action_choose(self, index: int) -> None:
        ids = list(self.options)
        self.dismiss(ids[index] if 0 <= index < len(ids) else None)
