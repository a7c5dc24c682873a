"""`deltamem-chat import FORMAT IN OUT`: convert a chat log or benchmark file into a transcript."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from deltamem_chat.transcripts import (
    LOCOMO_CATEGORIES,
    ImportFormatError,
    Transcript,
    TranscriptError,
    import_locomo,
    import_longmemeval,
    import_openai,
    import_sharegpt,
    write_transcript,
)


class ImportFormat(str, Enum):
    """The input formats `import` understands."""

    openai = "openai"
    sharegpt = "sharegpt"
    locomo = "locomo"
    longmemeval = "longmemeval"


def _fail(message: str) -> typer.Exit:
    """Print one line on stderr and give the exit to raise, so errors never show a traceback."""
    typer.echo(f"Cannot import: {message}", err=True)
    return typer.Exit(1)


def _read(
    fmt: ImportFormat, source: Path, sample: str | None, instance: str | None, categories: list[int]
) -> Transcript:
    """Run the importer for `fmt`, refusing options that belong to another format."""
    if sample is not None and fmt is not ImportFormat.locomo:
        raise _fail("--sample only applies to the locomo format (use --instance for longmemeval).")
    if categories and fmt is not ImportFormat.locomo:
        raise _fail("--category only applies to the locomo format.")
    if instance is not None and fmt is not ImportFormat.longmemeval:
        raise _fail("--instance only applies to the longmemeval format (use --sample for locomo).")
    if fmt is ImportFormat.openai:
        return import_openai(source)
    if fmt is ImportFormat.sharegpt:
        return import_sharegpt(source)
    if fmt is ImportFormat.locomo:
        return import_locomo(source, sample, categories or LOCOMO_CATEGORIES)
    return import_longmemeval(source, instance)


def import_command(
    fmt: Annotated[
        ImportFormat,
        typer.Argument(metavar="FORMAT", help="Input format: openai, sharegpt, locomo or longmemeval."),
    ],
    source: Annotated[Path, typer.Argument(metavar="IN", help="The file to convert (JSON or JSONL).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Where to write the transcript (.jsonl).")],
    sample: Annotated[
        str | None,
        typer.Option(help="locomo: the sample to import, by index (0 = first) or sample_id (e.g. conv-26)."),
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option(help="longmemeval: the instance to import, by index (0 = first) or question_id."),
    ] = None,
    category: Annotated[
        list[int] | None,
        typer.Option(
            "--category",
            min=1,
            max=5,
            help="locomo: QA category to turn into probes (repeat for several; default all, 1-5).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace OUT if it already exists.")] = False,
) -> None:
    """Convert a chat log or memory-benchmark file into a deltamem-chat transcript."""
    if out.exists() and not force:
        raise _fail(f"{out} already exists; pass --force to replace it.")
    if not out.parent.is_dir():
        raise _fail(f"the folder {out.parent} does not exist.")
    try:
        transcript = _read(fmt, source, sample, instance, category or [])
        write_transcript(transcript, out)
    except (ImportFormatError, TranscriptError) as error:
        raise _fail(f"{error}.") from None
    except OSError as error:
        raise _fail(f"{out}: cannot write ({error.strerror}).") from None
    messages, probes = len(transcript.messages), len(transcript.probes)
    typer.echo(f"Wrote {out}: {messages} message{'s' * (messages != 1)}, {probes} probe{'s' * (probes != 1)}.")


def register(app: typer.Typer) -> None:
    """Add the `import` sub-command to the CLI."""
    app.command("import")(import_command)
