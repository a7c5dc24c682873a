"""Small text helpers shared by the screens, the headless replay and the reports."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text


def one_line(text: str, limit: int) -> str:
    """Whitespace collapsed, cut at `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def stamp(when: datetime | None = None) -> str:
    """A timestamp for default file names: `20250131-235959`."""
    return f"{when or datetime.now():%Y%m%d-%H%M%S}"


def error_line(message: str) -> Text:
    """`error: <message>` for the terminal, the message as it is (never read as markup: `deltamem-chat[gpu]`)."""
    return Text.assemble(("error:", "bold red"), " ", message)
