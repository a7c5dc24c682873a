"""One style for every command's help: the `CommandLine` app makes each command (and itself) with these classes.

Typer's rich help gives every option a type column, flags too (`--force <bool>`), and writes required arguments as
`{FILE}` in the usage line, the notation of a choice elsewhere. Here a flag shows no type (`--force`,
`--ab/--delta-only`), an argument is named in capitals in the panel and the usage line (`FILE`, `[FILE]` when
optional, `PATHS...` for several), and a choice shows its choices (Typer's `<openai|sharegpt|…>`).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _restyle(param: object) -> None:
    """A flag without a type; an argument named in capitals."""
    if isinstance(param, TyperOption) and param.is_flag:
        param.metavar = ""
    elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
        param.metavar = param.name.upper()


def _usage(argument: TyperArgument) -> str:
    name = argument.metavar or ""
    if not argument.required:
        name = f"[{name}]"
    return f"{name}..." if argument.nargs != 1 else name


class _Styled:
    """What the group and the commands share: their parameters restyled, the help option too."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _restyle(param)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        _restyle(option)
        return option


class StyledGroup(_Styled, TyperGroup):
    """The app itself (its callback is the chat)."""


class StyledCommand(_Styled, TyperCommand):
    """A sub-command, whose usage line names its arguments the click way."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_usage(param) for param in self.get_params(ctx) if isinstance(param, TyperArgument)]


class CommandLine(typer.Typer):
    """A Typer app whose group and commands are the styled ones (unless a command asks for another class)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=StyledGroup, **kwargs)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None,  # type: ignore[override]
                **kwargs: Any) -> Any:
        return super().command(name, cls=cls or StyledCommand, **kwargs)
