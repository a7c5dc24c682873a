"""A command's output files (reports, summaries), written so that a run's results survive a path that cannot be written.

Each output is written atomically (`deltamem.files`). `-` as the path prints it on standard output instead (progress
and tables go to standard error, so standard output holds the output alone). Before a long run, `check_output`
refuses a path that names a folder or something other than a regular file. After the run, a write that fails
(a full disk, a folder removed meanwhile) puts the output in the system's temporary folder instead, and the
command prints its table anyway, then one sentence saying where it could not write, why, and where the output is.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path

from deltamem.files import SaveError, atomic_write_text, writable_target

STDOUT = "-"
"""The path that means standard output."""


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == STDOUT


def check_output(path: Path | None, option: str) -> str | None:
    """Why `path` cannot take an output (a folder, a device, a missing folder above it), before any work; or None."""
    if path is None or is_stdout(path):
        return None
    try:
        writable_target(path)
    except SaveError as exc:
        return f"{option}: {exc}; name a file, or {STDOUT} for standard output"
    parent = Path(path).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return (f"{option}: could not write {path}: {parent} is not a folder; name a file, or {STDOUT} for standard "
                "output")
    return None


def fallback_path(path: Path) -> Path:
    """Where an output goes when its own path cannot be written: the temporary folder, under a dated name."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = Path(path).name or "output"
    return Path(tempfile.gettempdir()) / f"deltamem-chat-{stamp}-{name}"


def write_output(path: Path, text: str, what: str, option: str, retry: str | None = None) -> tuple[str | None,
                                                                                                  str | None]:
    """Write `text` to `path` (or standard output for `-`); `retry` says how to have it when no file can be written
    (by default: rerun with `<option> -`).

    Returns (where it went, the problem sentence): (path, None) when written there, (fallback, sentence) when it went
    to the fallback file instead, (None, sentence) when neither could be written.
    """
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return STDOUT, None
    try:
        atomic_write_text(path, text)
        return str(path), None
    except SaveError as exc:
        problem = str(exc)
    fallback = fallback_path(path)
    try:
        atomic_write_text(fallback, text)
    except SaveError as exc:
        retry = retry or f"rerun with {option} {STDOUT} to have it on standard output"
        return None, f"{problem}, nor the fallback ({exc}): the {what} is lost; {retry}"
    return str(fallback), f"{problem}; the {what} is saved in {fallback} instead"
