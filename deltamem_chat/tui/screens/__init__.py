"""Dialogs and screens over the views."""

from deltamem_chat.tui.screens.choice import ChoiceDialog
from deltamem_chat.tui.screens.confirm import ConfirmDialog
from deltamem_chat.tui.screens.prompt import PromptDialog
from deltamem_chat.tui.screens.sessions import SessionsScreen

__all__ = ["ChoiceDialog", "ConfirmDialog", "PromptDialog", "SessionsScreen"]
