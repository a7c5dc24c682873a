"""Retrieval for the `rag` lanes: the messages a window dropped, ranked by BM25, put back inside a token budget.

Without δ-mem, a user who wants a bounded window to remember would index the turns that left it and retrieve the
relevant ones into the prompt. `MessageIndex` is that alternative, with `bm25s` (English stop words and its Snowball
stemmer): the messages are indexed as they leave the window, and the latest user message is the query.

The retrieved messages come back as one user message, always worded the same (`block_message`): the header
`RETRIEVAL_HEADER`, then one line per message in the conversation's order, `role: content`, with the date of its
session in front (`[date] `) where a message before it in the conversation started with a `DATE_PREFIX` line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: The line a session's first message starts with when the conversation has dates (`DATE: <date>`).
DATE_PREFIX = "DATE: "

#: The first line of the retrieved block.
RETRIEVAL_HEADER = "Earlier in this conversation:"

#: The default budget of the block: this fraction of the window.
DEFAULT_SHARE = 4


class RetrievalError(ValueError):
    """A retrieval setting we cannot read."""


@dataclass(frozen=True)
class RetrievalSettings:
    """The top `k` messages by BM25, inside `tokens` tokens of block (None: a quarter of the window)."""

    k: int = 3
    tokens: int | None = None

    def budget(self, window: int) -> int:
        """The block's budget in tokens under a window of `window` tokens."""
        return self.tokens if self.tokens is not None else max(1, window // DEFAULT_SHARE)

    def __str__(self) -> str:
        return f"k={self.k},tokens={'auto' if self.tokens is None else self.tokens}"

    @classmethod
    def parse(cls, text: str | None) -> RetrievalSettings:
        """Read `k=3,tokens=256` (either part may be left out; `tokens=auto` is a quarter of the window)."""
        if not text:
            return cls()
        values: dict[str, int | None] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            match = re.fullmatch(r"(k|tokens)\s*=\s*([0-9]{1,9}|auto)", part.lower())
            if not match or (match.group(1) == "k" and match.group(2) == "auto"):
                raise RetrievalError(f'retrieval "{text}": expected k=N and/or tokens=N (e.g. k=3,tokens=256), '
                                     f'not "{part}"')
            value = None if match.group(2) == "auto" else int(match.group(2))
            if value is not None and value < 1:
                raise RetrievalError(f'retrieval "{text}": {match.group(1)} must be at least 1')
            values[match.group(1)] = value
        k = values.get("k")
        return cls(k=3 if k is None else k, tokens=values.get("tokens"))


class MessageIndex:
    """BM25 over a growing list of texts; the index is rebuilt only when the list changed since the last search."""

    def __init__(self) -> None:
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._texts: tuple[str, ...] = ()
        self._index: bm25s.BM25 | None = None

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, return_ids=False,
                                    show_progress=False)

    def search(self, texts: Sequence[str], query: str, k: int) -> list[int]:
        """Indices of the at most `k` texts that match `query` best (some query term in common), best first."""
        if not texts or k < 1:
            return []
        if tuple(texts) != self._texts:
            self._texts = tuple(texts)
            self._index = self._bm25s.BM25()
            self._index.index(self._tokens(texts), show_progress=False)
        assert self._index is not None
        query_tokens = self._tokens([query])
        if not query_tokens[0]:
            return []
        found, scores = self._index.retrieve(query_tokens, k=min(k, len(texts)), show_progress=False)
        return [int(i) for i, score in zip(found[0], scores[0]) if score > 0]


def dates_of(contents: Sequence[str]) -> list[str | None]:
    """Each message's session date: that of the latest message up to it whose content starts with a date line."""
    dates, current = [], None
    for content in contents:
        if content.startswith(DATE_PREFIX):
            current = content[len(DATE_PREFIX):].split("\n", 1)[0].strip() or current
        dates.append(current)
    return dates


def undated(content: str) -> str:
    """A message's content without the date line it may start with."""
    if content.startswith(DATE_PREFIX):
        return content.split("\n", 1)[1] if "\n" in content else ""
    return content


def block_line(role: str, content: str, date: str | None) -> str:
    """One retrieved message in the block, on one line: its date line left out, its date in front instead."""
    text = f"{role}: {' '.join(undated(content).split())}"
    return f"[{date}] {text}" if date else text


def block_message(lines: Sequence[str]) -> dict[str, str]:
    """The retrieved block as the message the prompt holds."""
    return {"role": "user", "content": "\n".join([RETRIEVAL_HEADER, *lines])}


def fit_block(ranked: Sequence[int], lines: dict[int, str], cost: Callable[[dict[str, str]], int],
              budget: int) -> list[int]:
    """The ranked messages that fit the budget together (best first, skipping any that would pass it), in order."""
    chosen: list[int] = []
    for index in ranked:
        trial = sorted([*chosen, index])
        if cost(block_message([lines[i] for i in trial])) <= budget:
            chosen = trial
    return chosen


__all__ = ["DATE_PREFIX", "RETRIEVAL_HEADER", "MessageIndex", "RetrievalError", "RetrievalSettings", "block_line",
           "block_message", "dates_of", "fit_block", "undated"]
