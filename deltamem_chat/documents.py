"""Documents to read into memory (`read FILE` in the chat, `--read FILE`): a text or Markdown file, checked first.

The whole file is read as UTF-8 text (a BOM dropped, line ends kept); anything else is one sentence naming the file.
Its title is its name; the lanes read it as `deltamem_chat.transcripts.reading.document_text` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deltamem.files import decode_text

#: The largest document read (bytes): well past anything a window or the trained write horizon covers.
MAX_BYTES = 64 * 2**20


class DocumentError(ValueError):
    """A file that cannot be read as a document; the message names it and says why."""


@dataclass(frozen=True)
class Document:
    title: str
    text: str

    @property
    def size(self) -> str:
        """The length for a person: characters, with thousands separated."""
        return f"{len(self.text):,} characters"


def read_document(path: str | Path) -> Document:
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise DocumentError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DocumentError(f"{path}: {size:,} bytes, more than the {MAX_BYTES:,} a document may have")
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    text = decode_text(data, path, DocumentError)
    if not text.strip():
        raise DocumentError(f"{path}: the file is empty")
    if "\x00" in text:
        raise DocumentError(f"{path}: holds NUL characters, so it is not a text file")
    return Document(path.name, text)
