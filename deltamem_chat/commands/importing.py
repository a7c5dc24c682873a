"""`deltamem-chat import FORMAT IN OUT`: convert a chat log or benchmark file into transcripts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from deltamem_chat.transcripts import (
    LOCOMO_CATEGORIES,
    ImportFormatError,
    Transcript,
    TranscriptError,
    import_openai,
    import_sharegpt,
    read_locomo,
    read_longmemeval,
    read_memoryagentbench,
    write_transcripts,
)
from deltamem_chat.transcripts.importers.chunking import CHUNK_TOKENS


class ImportFormat(str, Enum):
    """The input formats `import` understands."""

    openai = "openai"
    sharegpt = "sharegpt"
    locomo = "locomo"
    longmemeval = "longmemeval"
    memoryagentbench = "memoryagentbench"


_OWNERS = {
    "--sample": ImportFormat.locomo,
    "--category": ImportFormat.locomo,
    "--instance": ImportFormat.longmemeval,
    "--row": ImportFormat.memoryagentbench,
    "--split": ImportFormat.memoryagentbench,
    "--chunk-tokens": ImportFormat.memoryagentbench,
}
"""Each format-specific option and the format it belongs to."""

_PICKERS = {owner: option for option, owner in _OWNERS.items() if option in ("--sample", "--instance", "--row")}
"""The option that picks one conversation, for the formats whose files hold many."""

_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class _Options:
    """The format-specific options as given (None when not)."""

    sample: str | None
    instance: str | None
    row: str | None
    split: str | None
    chunk_tokens: int | None
    categories: list[int] | None

    def given(self) -> dict[str, object]:
        """Each option's value by its name on the command line."""
        return {
            "--sample": self.sample,
            "--category": self.categories,
            "--instance": self.instance,
            "--row": self.row,
            "--split": self.split,
            "--chunk-tokens": self.chunk_tokens,
        }


def _fail(message: str) -> typer.Exit:
    """Print one line on stderr and give the exit to raise, so errors never show a traceback."""
    typer.echo(f"Cannot import: {message}", err=True)
    return typer.Exit(1)


def _refuse_foreign_options(fmt: ImportFormat, options: _Options) -> None:
    for option, value in options.given().items():
        owner = _OWNERS[option]
        if value is not None and owner is not fmt:
            hint = f" (use {_PICKERS[fmt]} for {fmt.value})" if option in _PICKERS.values() and fmt in _PICKERS else ""
            raise _fail(f"{option} only applies to the {owner.value} format{hint}.")


def _read(fmt: ImportFormat, source: Path, options: _Options) -> dict[str, Transcript]:
    """Run the importer for `fmt`: every conversation in `source`, or the one picked, by the name its file gets."""
    if fmt is ImportFormat.openai:
        return {source.stem: import_openai(source)}
    if fmt is ImportFormat.sharegpt:
        return {source.stem: import_sharegpt(source)}
    if fmt is ImportFormat.locomo:
        return read_locomo(source, options.sample, options.categories or LOCOMO_CATEGORIES)
    if fmt is ImportFormat.longmemeval:
        return read_longmemeval(source, options.instance)
    return read_memoryagentbench(source, options.row, options.split, options.chunk_tokens or CHUNK_TOKENS)


def _targets(fmt: ImportFormat, source: Path, out: Path, transcripts: dict[str, Transcript]) -> dict[Path, Transcript]:
    """Where each transcript goes: OUT itself when it names a .jsonl file, else <name>.jsonl inside the folder OUT."""
    if out.suffix == ".jsonl" and not out.is_dir():
        if len(transcripts) > 1:
            picker = f", or pick one with {_PICKERS[fmt]}" if fmt in _PICKERS else ""
            raise _fail(f"{source} holds {len(transcripts)} conversations; give a folder as OUT{picker}.")
        if not out.parent.is_dir():
            raise _fail(f"the folder {out.parent} does not exist.")
        return {out: next(iter(transcripts.values()))}
    if out.exists() and not out.is_dir():
        raise _fail(f"{out} is a file, not a folder; name a .jsonl file or a folder as OUT.")
    targets = {out / f"{_UNSAFE.sub('_', name)}.jsonl": transcript for name, transcript in transcripts.items()}
    if len(targets) < len(transcripts):
        raise _fail(f"two conversations in {source} would get the same file name in {out}.")
    return targets


def _refuse_overwriting_input(source: Path, targets: dict[Path, Transcript]) -> None:
    """An output that is the input file itself (or a link to it) would destroy what it is made from."""
    for path in targets:
        try:
            same = path.exists() and source.exists() and os.path.samefile(path, source)
        except OSError:
            same = False
        if same:
            raise _fail(f"{path} is the input file itself; name another OUT, so that {source} is kept.")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' * (count != 1)}"


def _report(out: Path, targets: dict[Path, Transcript]) -> None:
    """One line per file written, and a total when there are several."""
    for path, transcript in targets.items():
        messages, probes = _plural(len(transcript.messages), "message"), _plural(len(transcript.probes), "probe")
        typer.echo(f"Wrote {path}: {messages}, {probes}.")
    if len(targets) > 1:
        messages = _plural(sum(len(t.messages) for t in targets.values()), "message")
        probes = _plural(sum(len(t.probes) for t in targets.values()), "probe")
        typer.echo(f"Wrote {_plural(len(targets), 'transcript')} to {out}: {messages}, {probes}.")


def import_command(
    fmt: Annotated[
        ImportFormat,
        typer.Argument(
            metavar="FORMAT", help="Input format: openai, sharegpt, locomo, longmemeval or memoryagentbench."
        ),
    ],
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN",
            help="The file to convert (JSON, JSONL or parquet; locomo also takes the release zip or a folder).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Argument(
            metavar="OUT",
            help="A .jsonl file for one conversation, or a folder (created if needed) to get one <name>.jsonl each.",
        ),
    ],
    sample: Annotated[
        str | None,
        typer.Option(help="locomo: import only this sample, by sample_id (e.g. conv-26) or index (0 = first)."),
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option(help="longmemeval: import only this instance, by question_id or index (0 = first)."),
    ] = None,
    row: Annotated[
        str | None,
        typer.Option(
            help="memoryagentbench: import only this row, by index (0 = first) or name (e.g. Test_Time_Learning-2)."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="memoryagentbench: the split (the probes' category); by default from the file name."),
    ] = None,
    chunk_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"memoryagentbench: tokens per context chunk (default {CHUNK_TOKENS}, the official size)."
        ),
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
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace files that already exist.")] = False,
) -> None:
    """Convert a chat log or memory-benchmark file into deltamem-chat transcripts."""
    options = _Options(sample, instance, row, split, chunk_tokens, category)
    _refuse_foreign_options(fmt, options)
    try:
        targets = _targets(fmt, source, out, _read(fmt, source, options))
        _refuse_overwriting_input(source, targets)
        existing = next((path for path in targets if path.exists()), None)
        if existing is not None and not force:
            raise _fail(f"{existing} already exists; pass --force to replace it.")
        write_transcripts(targets)
    except (ImportFormatError, TranscriptError) as error:
        raise _fail(f"{error}.") from None
    except OSError as error:
        raise _fail(f"{error}.") from None
    _report(out, targets)


def register(app: typer.Typer) -> None:
    """Add the `import` sub-command to the CLI."""
    app.command("import")(import_command)
