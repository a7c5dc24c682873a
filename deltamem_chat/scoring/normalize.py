"""Our answer normaliser, shared by the transcript reader (which rejects answers that normalise to nothing) and our
scoring rule. It imports nothing from the project, so the reader can use it without an import cycle.
"""

from __future__ import annotations

import re
import string
import unicodedata

_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _strip_punctuation(text: str) -> str:
    """Delete punctuation as SQuAD does ("don't" -> "dont"), but turn dashes other than "-" into spaces.

    LLM replies often glue words with em dashes ("Thursday—after lunch"); deleting the dash would merge
    the words and hide a correct answer.
    """
    kept: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Pd" and char != "-":
            kept.append(" ")
        elif char not in _ASCII_PUNCTUATION and not category.startswith("P"):
            kept.append(char)
    return "".join(kept)


def normalize_answer(text: str) -> str:
    """NFD, lower-case, drop punctuation, drop articles (and "and", as LoCoMo does), collapse whitespace."""
    text = unicodedata.normalize("NFD", text).lower()
    text = _strip_punctuation(text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())
