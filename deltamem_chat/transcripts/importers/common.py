"""What every importer shares: the error class, reading JSON (a file, a zip's members, a folder) and shape checks."""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from deltamem.files import JSONLimitError, parse_json
from deltamem_chat.transcripts.errors import FileError
from deltamem_chat.transcripts.model import Item, Message, Transcript, TranscriptMeta

T = TypeVar("T")


class ImportFormatError(FileError):
    """An input file does not have the shape its format promises; `line` is set for JSON syntax errors."""


@dataclass(frozen=True)
class Document:
    """The JSON records of one file; `where` names it in errors (a zip member as zip/member), `label` in meta."""

    where: Path
    label: str
    records: list[object]


def read_text(path: Path) -> str:
    """The file's UTF-8 text (a byte-order mark is dropped), or an error that says why it cannot be had."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportFormatError(path, "no such file") from None
    except IsADirectoryError:
        raise ImportFormatError(path, "is a folder, not a file") from None
    except UnicodeDecodeError:
        raise ImportFormatError(path, "not UTF-8 text") from None
    except OSError as error:
        raise ImportFormatError(path, f"cannot be read ({error.strerror})") from None


def _limit(where: Path, error: JSONLimitError, line: int | None = None) -> ImportFormatError:
    """A value past the JSON reader's limits (nesting, number size, lone surrogates) as an import error."""
    field = f"{error.where} " if error.where else ""
    return ImportFormatError(where, f"{field}holds {error.problem}", line)


def parse_records(where: Path, text: str) -> list[object]:
    """Parse JSON or JSONL text; a JSON array gives its elements, any other value one record."""
    try:
        value = parse_json(text)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":
            raise ImportFormatError(where, f"invalid JSON: {error.msg} (column {error.colno})", error.lineno) from None
        return _parse_json_lines(where, text)
    except JSONLimitError as error:
        limit = _limit(where, error)
    else:
        return value if isinstance(value, list) else [value]
    # JSONL reports the line it is on; a document of one JSON value over many lines reports the file.
    try:
        _parse_json_lines(where, text)
    except ImportFormatError as by_line:
        if by_line.message.startswith("holds") or " holds " in by_line.message:
            raise by_line from None
    raise limit from None


def _parse_json_lines(where: Path, text: str) -> list[object]:
    """Parse one JSON value per non-blank line (JSONL)."""
    records: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_json(line))
        except json.JSONDecodeError as error:
            raise ImportFormatError(where, f"invalid JSON: {error.msg} (column {error.colno})", number) from None
        except JSONLimitError as error:
            raise _limit(where, error, number) from None
    return records


def load_records(path: Path) -> list[object]:
    """The records of one JSON or JSONL file."""
    return parse_records(path, read_text(path))


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort 9.json before 26.json, the way a person numbers files (ASCII digits only: "²" is no number)."""
    return [(0, int(part)) if part.isascii() and part.isdigit() else (1, part)
            for part in re.split(r"([0-9]{1,18})", name) if part]


def _is_json_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".json") and not base.startswith(".") and not name.startswith("__MACOSX/")


def _zip_documents(path: Path) -> list[Document]:
    """Every .json member of a zip archive, read in memory (nothing is extracted to disk)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted((n for n in archive.namelist() if _is_json_name(n)), key=_natural_key)
            raw = {name: archive.read(name) for name in names}
    except FileNotFoundError:
        raise ImportFormatError(path, "no such file") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise ImportFormatError(path, f"not a readable zip archive ({error})") from None
    documents = []
    for name, data in raw.items():
        where = path / name
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportFormatError(where, "not UTF-8 text") from None
        documents.append(Document(where, f"{path.name}/{name}", parse_records(where, text)))
    return documents


def load_documents(path: Path) -> list[Document]:
    """The JSON documents behind `path`: a JSON/JSONL file, each .json member of a zip, or each .json in a folder."""
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and _is_json_name(p.name)]
        files.sort(key=lambda p: _natural_key(p.name))
        documents = [Document(file, f"{path.name}/{file.name}", load_records(file)) for file in files]
    elif path.suffix.lower() == ".zip":
        documents = _zip_documents(path)
    else:
        return [Document(path, path.name, load_records(path))]
    if not documents:
        raise ImportFormatError(path, "holds no .json files")
    return documents


def as_object(where: Path, value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ImportFormatError(where, f"{what} should be a JSON object")
    return value


def as_list(where: Path, value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise ImportFormatError(where, f"{what} should be a JSON array")
    return value


def as_text(where: Path, value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ImportFormatError(where, f"{what} should be a string")
    return value


def optional_text(where: Path, value: object, what: str) -> str | None:
    """A string, or None for a missing (null) value."""
    return None if value is None else as_text(where, value, what)


def answer_text(where: Path, value: object, what: str) -> str:
    """Benchmarks write answers as strings or bare numbers (a count, a year); both become text.

    Anything else (null, true, a list, an object, NaN) is refused rather than turned into Python's text for it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ImportFormatError(where, f"{what} should be a string or a number (got {value})")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ImportFormatError(where, f"{what} should be a string or a number (got {describe(value)})")
    return str(value).strip()


def name_text(where: Path, value: object, what: str) -> str:
    """An id that names a conversation (and its output file): a string or an integer, never null or a list."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ImportFormatError(where, f"{what} should be a string or an integer (got {describe(value)})")
    text = str(value)
    if not text.strip():
        raise ImportFormatError(where, f"{what} is empty")
    if not text.isprintable():
        raise ImportFormatError(where, f"{what} should be a name without line breaks or control characters")
    return text


def describe(value: object) -> str:
    """A JSON value's type as a person editing the file names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


_INDEX = re.compile(r"[0-9]{1,18}")


def chosen(path: Path, names: Sequence[str], wanted: str | int | None, noun: str, key: str) -> list[int]:
    """Indices of the records to import: all of them, or the one named `wanted`, or else at 0-based index `wanted`."""
    if not names:
        raise ImportFormatError(path, f"holds no {noun}s")
    if wanted is None:
        return list(range(len(names)))
    if str(wanted) in names:
        return [names.index(str(wanted))]
    if not _INDEX.fullmatch(str(wanted)):
        listing = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        shown = repr(str(wanted)) if len(str(wanted)) <= 40 else repr(str(wanted)[:39]) + "…"
        raise ImportFormatError(path, f"no {noun} has {key} {shown} (the file has: {listing})")
    index = int(wanted)
    if index >= len(names):
        count = len(names)
        raise ImportFormatError(path, f"{noun} {index} is out of range (the file has {count}: 0..{count - 1})")
    return [index]


def keyed(path: Path, pairs: Iterable[tuple[str, T]], noun: str, key: str) -> dict[str, T]:
    """Collect named results, refusing two with one name: they would be written to the same file."""
    result: dict[str, T] = {}
    for name, value in pairs:
        if name in result:
            raise ImportFormatError(path, f"two {noun}s have {key} {name!r}")
        result[name] = value
    return result


def finish(where: Path, meta: TranscriptMeta, items: list[Item], subject: str | None = None) -> Transcript:
    """Refuse an input with no conversation in it, naming the input (and `subject` in it), not the output."""
    if not any(isinstance(item, Message) and item.role != "system" for item in items):
        prefix = f"{subject} " if subject else ""
        raise ImportFormatError(where, f"{prefix}contains no user or assistant messages with text")
    return Transcript(path=where, meta=meta, items=items)
