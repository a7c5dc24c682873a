"""deltamem-chat: a terminal app that shows a frozen LLM and its δ-mem twin side by side."""

from deltamem import __version__

__all__ = ["__version__"]
