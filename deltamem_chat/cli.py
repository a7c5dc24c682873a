"""The `deltamem-chat` command line: the side-by-side chat by default, and sub-commands for replay and tools.

Most commands load a model, so the full app (`deltamem_chat.commands.chat`) imports torch and transformers, which takes
seconds. `score` needs neither: `main` runs it from a small app of its own that imports nothing else. `app` here is the
full app, imported on first use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

#: Sub-commands that `main` runs without importing the rest of the app.
LIGHT_COMMANDS: tuple[str, ...] = ("score",)


def light_app() -> typer.Typer:
    """An app with only `LIGHT_COMMANDS`, with the same names, options and help as in the full app."""
    import typer

    from deltamem_chat.commands import score

    app = typer.Typer(name="deltamem-chat", add_completion=False, rich_markup_mode="rich")

    @app.callback()
    def light() -> None:
        """See what δ-mem remembers: a frozen LLM and the same LLM with δ-mem, side by side."""

    score.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:2] and sys.argv[1] in LIGHT_COMMANDS:
        light_app()()
    else:
        from deltamem_chat.commands.chat import app

        app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from deltamem_chat.commands.chat import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
