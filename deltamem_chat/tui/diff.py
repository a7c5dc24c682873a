"""Word-level differences between two replies: which words of each the other does not have, as character spans.

A diff of words, not characters: what a reader compares is which words (a name, a number) one lane said and the
other did not. Words are compared without the punctuation around them and their case ("that." is "That"), and
marked whole. Whitespace is kept out of the spans, so marks sit on words only.
"""

from __future__ import annotations

import re
import string
from difflib import SequenceMatcher

_WORD = re.compile(r"\S+")

#: A character range [start, end) of a text.
Span = tuple[int, int]


def _key(word: str) -> str:
    """What a word is compared by: without the punctuation around it, case-folded (a word of punctuation alone
    stays itself)."""
    return word.strip(string.punctuation + "…“”‘’«»").casefold() or word


def word_diff(left: str, right: str) -> tuple[list[Span], list[Span]]:
    """The spans of `left`'s words that `right` lacks, and of `right`'s words that `left` lacks."""
    left_words = [(m.start(), m.end()) for m in _WORD.finditer(left)]
    right_words = [(m.start(), m.end()) for m in _WORD.finditer(right)]
    matcher = SequenceMatcher(None, [_key(left[a:b]) for a, b in left_words],
                              [_key(right[a:b]) for a, b in right_words], autojunk=False)
    only_left: list[Span] = []
    only_right: list[Span] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            only_left.extend(left_words[i1:i2])
            only_right.extend(right_words[j1:j2])
    return only_left, only_right
