"""`deltamem-chat score FILE`: score predictions made by any system, under our rule or an official protocol.

This module and everything it imports stay clear of torch and transformers, so `deltamem-chat score` starts in well
under a second (`deltamem_chat.cli.main` runs it without importing the other commands).
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deltamem.files import SaveError
from deltamem_chat.scoring import DEFAULT_PROTOCOL, ScoreSummary, ScoringProtocol, get_protocol
from deltamem_chat.scoring.predictions import (
    PREDICTION_LANE,
    PredictionError,
    read_predictions,
    score_predictions,
    write_scored,
)


class ProtocolName(str, Enum):
    """The protocols `score` offers (the keys of `deltamem_chat.scoring.PROTOCOLS`)."""

    ours = "ours"
    locomo = "locomo"
    mab = "mab"


_DEFAULT = ProtocolName(DEFAULT_PROTOCOL)


def _fail(message: str) -> typer.Exit:
    """Print one line on stderr and give the exit to raise, so errors never show a traceback."""
    typer.echo(f"Cannot score: {message}", err=True)
    return typer.Exit(1)


def summary_table(summary: ScoreSummary, protocol: ScoringProtocol, title: str) -> Table:
    """The mean score overall and per category, with counts; means rounded to 4 decimals as LoCoMo's summaries are."""
    lane = summary.lanes[PREDICTION_LANE]
    table = Table(title=title, title_justify="left")
    table.add_column("category")
    if protocol.category_names:
        table.add_column("name")
    table.add_column("count", justify="right")
    table.add_column(f"mean {protocol.headline}", justify="right")
    for category, group in lane.categories.items():
        name = [protocol.category_names.get(category, "")] if protocol.category_names else []
        table.add_row("—" if category is None else str(category), *name, str(group.probes), f"{group.mean_score:.4f}")
    if lane.categories:
        table.add_section()
    table.add_row("all", *([""] if protocol.category_names else []), str(lane.probes), f"{lane.mean_score:.4f}")
    return table


def score_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Predictions: one JSON object per line (.jsonl).")],
    protocol: Annotated[
        ProtocolName,
        typer.Option("--protocol", "-p", help="ours (our hit rule), locomo (LoCoMo's official score) or mab "
                                              "(MemoryAgentBench's metrics)."),
    ] = _DEFAULT,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write every line back with its score (and metrics) here (.jsonl)."),
    ] = None,
    canonical: Annotated[
        bool,
        typer.Option("--canonical", help="Cut each prediction as the protocol cuts a raw model reply before "
                                         "scoring (locomo: first line, option letters mapped back)."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace OUT if it already exists.")] = False,
) -> None:
    """Score a predictions file and print the mean score overall and per category."""
    if out is not None and out.exists() and file.exists() and os.path.samefile(out, file):
        raise _fail(f"{out} is the predictions file itself; name another --out, so that {file} is kept.")
    if out is not None and out.exists() and not force:
        raise _fail(f"{out} already exists; pass --force to replace it.")
    if out is not None and not out.parent.is_dir():
        raise _fail(f"the folder {out.parent} does not exist.")
    scoring = get_protocol(protocol.value)
    try:
        rows, summary = score_predictions(read_predictions(file, scoring), scoring, canonical=canonical)
        if out is not None:
            write_scored(rows, out)
    except PredictionError as error:
        raise _fail(f"{error}.") from None
    except SaveError as error:
        raise _fail(f"{error}.") from None
    Console().print(summary_table(summary, scoring, f"{file.name} · --protocol {scoring.name}"))
    if out is not None:
        typer.echo(f"Wrote {out}: {len(rows)} scored line{'s' * (len(rows) != 1)}.")


def register(app: typer.Typer) -> None:
    """Add the `score` sub-command to the CLI."""
    app.command("score")(score_command)
