"""What the lanes read of a transcript's items: documents under their title, dates before sessions and questions.

A document message is read as `Document: <title>` and a blank line before its text (`document_text`), so both lanes
know what they are given.

Benchmarks of long conversations ask when things happened (LoCoMo's temporal questions are a fifth of them), and
the transcript keeps the dates in `Message.time` and `Probe.date`. The official LoCoMo protocol writes
`DATE: <date>` at the start of each session; we do the same, on its own line before the content of a message whose
session or time differs from the message before it, and before a question that says when it is asked. Without
times nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deltamem_chat.transcripts.model import Item, Message, Probe

DATE_LINE = "DATE: {}\n"
DOCUMENT_HEADER = "Document: {}\n\n"


def document_text(title: str, text: str) -> str:
    """A document as the lanes read it: its title, a blank line, its text."""
    return DOCUMENT_HEADER.format(title) + text


def dated(text: str, date: str | None) -> str:
    """`text` with its date line in front, or unchanged without a date."""
    return text if not date else DATE_LINE.format(date) + text


def read_texts(items: Sequence[Item], dates: bool = True,
               question: Callable[[Probe], str] = lambda probe: probe.question) -> list[str]:
    """What each item puts before the lanes: a message's content or a probe's question (as `question` words it,
    e.g. a scoring protocol), dated when `dates`."""
    texts: list[str] = []
    previous: tuple[object, str | None] | None = None
    for item in items:
        if isinstance(item, Message):
            here = (item.session, item.time)
            starts = item.time is not None and here != previous
            content = item.content if item.document is None else document_text(item.document, item.content)
            texts.append(dated(content, item.time if dates and starts else None))
            previous = here
        else:
            texts.append(dated(question(item), item.date if dates else None))
    return texts


__all__ = ["DATE_LINE", "DOCUMENT_HEADER", "dated", "document_text", "read_texts"]
