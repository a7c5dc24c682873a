"""deltamem-chat: a terminal app that shows a frozen LLM and its δ-mem twin side by side."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deltamem-chat")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
