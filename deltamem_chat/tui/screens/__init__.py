"""Dialogs over the chat."""

from deltamem_chat.tui.screens.prompt import PromptDialog

__all__ = ["PromptDialog"]
