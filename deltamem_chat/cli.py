"""The `deltamem-chat` command line: the TUI chat by default, and sub-commands for replay and tools."""

from __future__ import annotations

import typer

from deltamem_chat import __version__

app = typer.Typer(
    name="deltamem-chat",
    help="See what δ-mem remembers: a frozen LLM and the same LLM with δ-mem, side by side.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deltamem-chat {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def chat(
    ctx: typer.Context,
    adapter: str = typer.Option(
        "qwen3-4b", "--adapter", "-a", help="Adapter to chat with: an alias (see `models`), a folder or a hub id."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open the side-by-side chat (frozen | δ-mem) when no sub-command is given."""
    if ctx.invoked_subcommand is not None:
        return
    typer.echo(f"The chat TUI is not built yet (asked for adapter {adapter!r}).", err=True)
    raise typer.Exit(2)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
