"""`deltamem-chat bench`: the bench's options, made from its own table, so its help reads like every command's.

The values given go on to `python -m deltamem.bench`'s `main` as the command line it parses; what is not given
keeps the bench's default.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deltamem.benchmarks.options import DESCRIPTION, OPTIONS, BenchOption


def _annotation(option: BenchOption) -> Any:
    """The option's Typer parameter: its type (the choices, an integer's minimum) and its help."""
    value: Any = {"count": int, "file": Path}.get(option.kind, str)
    if option.kind == "choice":
        value = Literal[option.choices]  # type: ignore[valid-type]
    limits = {"min": option.minimum} if option.kind == "count" else {}
    return Annotated[value | None, typer.Option(option.flag, help=option.help, show_default=False, **limits)]


def _argv(values: dict[str, object]) -> list[str]:
    """The command line of the values given."""
    argv: list[str] = []
    for option in OPTIONS:
        value = values.get(option.name)
        if value is not None:
            argv += [option.flag, str(value)]
    return argv


def bench(**values: object) -> None:
    from deltamem.bench import main as bench_main

    raise typer.Exit(bench_main(_argv(values)))


bench.__doc__ = DESCRIPTION
bench.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_annotation(option))
    for option in OPTIONS if not option.hidden])


def register(app: typer.Typer) -> None:
    """Add the `bench` command."""
    app.command()(bench)
