"""LoCoMo's official QA score, as snap-research/locomo's `task_eval/evaluation.py` computes it.

Per question: Porter-stemmed token F1 after LoCoMo's normalisation; category 1 (multi-hop) splits prediction and
answer on commas and averages, over the answer's parts, the best F1 against any prediction part; category 3
(open-domain) keeps the answer up to its first ";"; categories 2 and 4 use plain F1; category 5 (adversarial) and any
abstention probe score 1 when the lower-cased reply contains "no information available" or "not mentioned".

Questions follow the official open-model script (`evaluate_llama2.py`): category 2 gets the date hint, and a category-5
probe with a distractor becomes a two-option question. Replies are cut as the δ-mem authors' harness cuts them
(`canonical`), without that harness's deletion of "a)" and "b)" anywhere in the reply. docs/transcripts.md lists where
snap-research's code and the δ-mem copy differ.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

import regex

from deltamem_chat.scoring.interface import ProbeScore
from deltamem_chat.scoring.ours import score_probe

if TYPE_CHECKING:
    from nltk.stem.porter import PorterStemmer

    from deltamem_chat.transcripts.model import Category, Probe

#: LoCoMo's category numbers as the released data uses them.
LOCOMO_CATEGORY_NAMES: Mapping[Category, str] = MappingProxyType(
    {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
)

#: Appended to every category-2 (temporal) question by the official scripts.
TEMPORAL_HINT = " Use DATE of CONVERSATION to answer with an approximate date."

#: The answer instruction the δ-mem authors' LoCoMo harness (and LoCoMo's open-model script) puts around each
#: question; `LocomoProtocol(instructed=True)` asks with it (`deltamem-chat eval --official`).
INSTRUCTION = ("Based on the above conversations, write a short answer for the following question in a few words. "
               "Do not write complete and lengthy sentences. Answer with exact words from the conversations whenever "
               "possible.\n\nQuestion: {}")

#: The abstention choice offered beside the distractor in a category-5 question.
ABSTENTION_OPTION = "No information available"

_OPTIONS = " (a) {} (b) {}. Select the correct answer by writing (a) or (b)."
_ABSTENTION_MARKS = ("no information available", "not mentioned")
_ARTICLES = regex.compile(r"\b(a|an|the|and)\b")
_PUNCTUATION = frozenset(string.punctuation)
_ANSWER_LABEL = re.compile("answer:", re.IGNORECASE)
_LEADING_OPTION = re.compile(r"^\(?[ab]\)\s*", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """LoCoMo's normalisation: delete commas, lower-case, delete ASCII punctuation, drop a/an/the/and, squeeze spaces.

    Unlike our normaliser there is no Unicode NFD, and Unicode punctuation stays.
    """
    text = text.replace(",", "").lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _stemmer() -> PorterStemmer:
    from nltk.stem.porter import PorterStemmer  # nltk takes half a second to import: only when a score needs it

    return PorterStemmer()


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stem(word)


def stemmed_f1(prediction: str, gold: str) -> float:
    """LoCoMo's single-answer F1: token F1 over Porter stems of the normalised texts; 0.0 when nothing is shared."""
    predicted = [_stem(word) for word in normalize_answer(prediction).split()]
    expected = [_stem(word) for word in normalize_answer(gold).split()]
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: str, gold: str) -> float:
    """LoCoMo's category-1 F1: for each comma-separated part of `gold`, the best `stemmed_f1` against any part of
    `prediction`, averaged over the parts of `gold`. Empty parts are kept, as the official code keeps them."""
    predictions = [part.strip() for part in prediction.split(",")]
    golds = [part.strip() for part in gold.split(",")]
    return sum(max(stemmed_f1(candidate, part) for candidate in predictions) for part in golds) / len(golds)


def locomo_score(prediction: str, probe: Probe) -> float:
    """The official per-question score of `prediction` (unrounded).

    Categories outside 1-5 (the official code stops on them) are scored with the single-answer F1 of categories 2/4.
    """
    if probe.abstain or probe.category == 5:
        lowered = prediction.lower()
        return float(any(mark in lowered for mark in _ABSTENTION_MARKS))
    answer = str(probe.answer)
    if probe.category == 3:
        answer = answer.split(";")[0].strip()
    if probe.category == 1:
        return multi_answer_f1(prediction, answer)
    return stemmed_f1(prediction, answer)


@dataclass(frozen=True)
class LocomoProtocol:
    """LoCoMo's questions and score. `seed` picks the option order of category-5 questions (see `options`);
    `instructed` asks each question inside the official answer instruction (`INSTRUCTION`)."""

    seed: int = 0
    instructed: bool = False

    name = "locomo"
    headline = "locomo_f1"
    metric_names = ("locomo_f1",)
    category_names = LOCOMO_CATEGORY_NAMES

    def options(self, probe: Probe) -> tuple[str, str] | None:
        """Options (a) and (b) of a category-5 (or abstention) probe with a distractor, else None.

        The official scripts flip a coin per question; here the order comes from a SHA-256 of the seed and the probe's
        id (its question when it has none), so it is the same on every run, and even over many probes.
        """
        if probe.distractor is None or not (probe.abstain or probe.category == 5):
            return None
        key = probe.id if probe.id is not None else probe.question
        if hashlib.sha256(f"{self.seed}\x1f{key}".encode()).digest()[0] % 2 == 0:
            return ABSTENTION_OPTION, probe.distractor
        return probe.distractor, ABSTENTION_OPTION

    def question(self, probe: Probe) -> str:
        """The question with the category-2 date hint, or as the two-option question for category 5."""
        asked = probe.question
        if probe.category == 2:
            asked += TEMPORAL_HINT
        elif (options := self.options(probe)) is not None:
            asked += _OPTIONS.format(*options)
        return INSTRUCTION.format(asked) if self.instructed else asked

    def canonical(self, prediction: str, probe: Probe) -> str:
        """The reply's first non-empty line; for a two-option question, the chosen option's text.

        An option is chosen by "(a)" anywhere in the line, the line "a", or a line starting "a)" (then the same for b);
        a line that abstains instead becomes "No information available". Otherwise "answer:" is removed and then a
        leading "(a)", "a)", "(b)" or "b)". Case is kept (every score lower-cases anyway).
        """
        text = prediction.replace('\\"', "'").strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            text = lines[0]
        options = self.options(probe)
        if options is not None:
            lowered = text.lower()
            for letter, option in zip("ab", options):
                if f"({letter})" in lowered or lowered == letter or lowered.startswith(f"{letter})"):
                    return option
            if any(mark in lowered for mark in _ABSTENTION_MARKS):
                return ABSTENTION_OPTION
        text = _ANSWER_LABEL.sub("", text).strip()
        return _LEADING_OPTION.sub("", text, count=1).strip()

    def score(self, prediction: str, probe: Probe) -> ProbeScore:
        value = locomo_score(prediction, probe)
        ours = score_probe(prediction, probe)
        return ProbeScore(hit=ours.hit, f1=ours.f1, score=value, metrics={"locomo_f1": value})
