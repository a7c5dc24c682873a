"""The error of a file the user gave us: it names the file (and the 1-based line when there is one)."""

from __future__ import annotations

import os
from pathlib import Path


class FileError(ValueError):
    """`<path>[:<line>]: <message>`, with the parts kept for callers that show them apart."""

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")
