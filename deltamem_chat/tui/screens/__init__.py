"""Dialogs over the views."""

from deltamem_chat.tui.screens.prompt import PromptDialog

__all__ = ["PromptDialog"]
