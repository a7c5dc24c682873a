"""Files on disk: atomic writes, and JSON read with limits.

Atomic writes: a file is either the old one or the complete new one, never a half-written mix. Everything is written
to a temporary file in the target folder and renamed over the target, so a full disk, a Ctrl-C or a kill mid-write
leaves what was saved before untouched. Only a regular file (or a new name) is ever replaced: a folder, a device such
as /dev/full or a pipe is refused. A temporary file left by a process that was killed is removed by the next write
of the same file.

JSON with limits: `parse_json` is `json.loads` that refuses, with a sentence, what would otherwise end in a Python
error or reach the model as garbage: values nested more than `MAX_JSON_DEPTH` deep, integers of more than
`MAX_INT_DIGITS` digits and lone surrogate escapes such as "\\ud800" (half of a UTF-16 pair, which no text can hold).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_JSON_DEPTH = 100
"""The deepest nesting of arrays and objects `parse_json` reads (no file of ours comes near it)."""

MAX_INT_DIGITS = 640
"""The longest integer `parse_json` reads: Python's lowest allowed limit on integer conversion, so an integer that
was read can always be printed back."""

_STALE_AFTER_S = 600
"""A temporary file without a process id in its name (written by an older version) counts as left over after this."""


class SaveError(OSError):
    """A file could not be written; the message names it and the previous version is intact."""


class JSONLimitError(ValueError):
    """Valid JSON syntax that holds something we refuse to read; `where` is the field's path ("" for the value)."""

    def __init__(self, problem: str, where: str = "") -> None:
        self.problem = problem
        self.where = where
        super().__init__(f"{where} holds {problem}" if where else f"holds {problem}")


# ----------------------------------------------------------------------------------------------- writing
def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:(?P<pid>[0-9]{1,10})-)?[0-9a-f]{8}\.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":
        return True                  # one of ours, possibly being written by another thread right now (on Windows,
                                     # os.kill(pid, 0) would send Ctrl-C, so nothing is taken for dead there)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                  # exists, owned by someone else
        return True
    return True


def remove_leftovers(folder: str | Path, names: Callable[[str], bool]) -> list[Path]:
    """Remove the temporary files in `folder`, of the files whose names `names` accepts, that a killed process left
    behind (its process id is in the name, and that process is gone); returns those removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry)
        if not match or not names(match["name"]):
            continue
        leftover = folder / entry
        try:
            if match["pid"] is not None:
                if _alive(int(match["pid"])):
                    continue
            elif time.time() - leftover.lstat().st_mtime < _STALE_AFTER_S:
                continue
            leftover.unlink()
            removed.append(leftover)
        except OSError:
            continue
    return removed


def writable_target(path: str | Path) -> Path:
    """The file a write of `path` replaces (a symbolic link's target), or SaveError when it is no regular file."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise SaveError(f"could not write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise SaveError(f"could not write {path}: it is a folder")
    if not stat.S_ISREG(mode):
        raise SaveError(f"could not write {path}: it is not a regular file, and only a regular file is replaced")
    return path


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the system lets a folder be opened and synced)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result onto `path`; on any failure remove the temporary file.

    Returns `path`. Raises `SaveError` (one sentence naming the file) when the file cannot be written, and also when
    `path` names something other than a regular file, which is never replaced.
    """
    path = Path(path)
    target = writable_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaveError(f"could not write {path}: {exc.strerror or exc}") from exc
    remove_leftovers(target.parent, lambda name: name == target.name)
    tmp = _temporary(target)
    try:
        # Created like a plain open() (0o666 less the umask), not private as tempfile's files are.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"could not write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (a text holding a lone surrogate cannot be UTF-8: SaveError)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SaveError(f"could not write {path}: the text holds a lone surrogate ({_escape(exc.object[exc.start])}), "
                        "which UTF-8 cannot store") from None
    return atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------------- reading
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,40}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(char: str) -> str:
    return f"\\u{ord(char):04x}"


def _integer(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise JSONLimitError(f"a number of {len(text.lstrip('-')):,} digits (at most {MAX_INT_DIGITS} are read)")
    return int(text)


def _path(parent: tuple | None, key: str | int | None = None) -> str:
    """A field's path as a reader writes it (messages[2].content), from the linked (parent, key) pairs of the walk."""
    steps = [] if key is None else [key]
    while parent is not None:
        parent, step = parent
        steps.append(step)
    text = ""
    for step in reversed(steps):
        if isinstance(step, int):
            text += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            text += f".{step}" if text else step
        else:                                # a key with spaces, quotes or line breaks: shown quoted, cut short
            quoted = json.dumps(step)
            text += f"[{quoted if len(quoted) <= 40 else quoted[:39] + '…'}]"
    return text


def _check_value(value: Any, strings: bool) -> None:
    """Walk `value` without recursion: nesting depth, and (with `strings`) lone surrogates in keys and strings."""
    if not isinstance(value, dict | list):
        if strings and isinstance(value, str) and (found := _SURROGATE.search(value)):
            raise JSONLimitError(f"a lone surrogate escape ({_escape(found[0])}), which is not a character")
        return
    stack: list[tuple[Any, int, tuple | None]] = [(value, 1, None)]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JSONLimitError(f"arrays and objects nested more than {MAX_JSON_DEPTH} deep")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if strings and isinstance(key, str) and (found := _SURROGATE.search(key)):
                raise JSONLimitError(f"a key with a lone surrogate escape ({_escape(found[0])}), which is not a "
                                     "character", _path(where))
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (where, key)))
            elif strings and isinstance(child, str) and (found := _SURROGATE.search(child)):
                raise JSONLimitError(f"a lone surrogate escape ({_escape(found[0])}), which is not a character",
                                     _path(where, key))


def parse_json(text: str) -> Any:
    """`json.loads(text)` within limits: `json.JSONDecodeError` for bad syntax, `JSONLimitError` for the rest.

    NaN and Infinity, which Python writes, are read as floats: whoever uses a number checks that it is finite.
    """
    try:
        value = json.loads(text, parse_int=_integer)
    except RecursionError:
        raise JSONLimitError(f"arrays and objects nested more than {MAX_JSON_DEPTH} deep") from None
    strings = _SURROGATE_ESCAPE.search(text) is not None
    if strings or text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        _check_value(value, strings)
    return value


def decode_text(data: bytes, path: Path, error: type[Exception]) -> str:
    """A file's bytes as UTF-8 text (a byte-order mark dropped), or `error("<path>: not UTF-8 text ...")`."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (bad byte at offset {exc.start:,})") from None


def read_json(path: Path, error: type[Exception], missing: str) -> Any:
    """Parse a JSON file, turning a missing, unreadable or broken file into `error("<path>: ...")`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a JSON file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    text = decode_text(data, path, error)
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except JSONLimitError as exc:
        raise error(f"{path}: {exc}") from None
