"""Our own rule for our own transcripts: a hit when the answer appears as whole words, and SQuAD-style token F1.

It is lenient on purpose (a long reply that contains the answer is a hit), which suits chat replies but makes the
numbers incomparable with published benchmark results: use the `locomo` or `mab` protocol for those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from deltamem_chat.scoring.interface import ProbeScore
from deltamem_chat.scoring.normalize import normalize_answer

if TYPE_CHECKING:
    from deltamem_chat.transcripts.model import Category, Probe

#: Replies that say the conversation does not answer the question, matched as whole words after normalisation
#: (so "I don't know." and "It is not mentioned anywhere" abstain). LoCoMo's abstention rule looks for the first
#: two; δ-mem's MemoryAgentBench prompt asks for "I don't know"; "do not know" is its unabbreviated form.
ABSTENTION_PHRASES: tuple[str, ...] = ("no information available", "not mentioned", "don't know", "do not know")

_NORMAL_ABSTENTIONS = tuple(normalize_answer(phrase) for phrase in ABSTENTION_PHRASES)


def abstains(prediction: str) -> bool:
    """True when the reply contains one of `ABSTENTION_PHRASES` as whole words, once both are normalised."""
    padded = f" {normalize_answer(prediction)} "
    return any(f" {phrase} " in padded for phrase in _NORMAL_ABSTENTIONS)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 over normalised tokens; both empty counts as agreement (1.0), one empty as 0.0."""
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def is_hit(prediction: str, answer: str, aliases: Iterable[str] = ()) -> bool:
    """True when the answer or an alias occurs as a whole-word sequence in the normalised prediction.

    An answer that normalises to nothing never hits: it would otherwise match every reply.
    """
    padded = f" {normalize_answer(prediction)} "
    for candidate in (answer, *aliases):
        normal = normalize_answer(candidate)
        if normal and f" {normal} " in padded:
            return True
    return False


def score_probe(prediction: str, probe: Probe) -> ProbeScore:
    """Our score: hit and the best F1 over the answer and its aliases; `score` is 1.0 for a hit, else 0.0.

    An abstention probe (`probe.abstain`) is a hit, with F1 1.0, when the reply abstains (`abstains`); its answer,
    if any, only explains why, so it is not matched.
    """
    if probe.abstain:
        hit = abstains(prediction)
        f1 = float(hit)
    else:
        hit = is_hit(prediction, probe.answer, probe.aliases)
        f1 = max(token_f1(prediction, gold) for gold in (probe.answer, *probe.aliases))
    return ProbeScore(hit=hit, f1=f1, score=float(hit), metrics={"hit": float(hit), "f1": f1})


class OursProtocol:
    """Our rule: the question as written, the reply as given, `score_probe`."""

    name = "ours"
    headline = "hit"
    metric_names = ("hit", "f1")
    category_names: Mapping[Category, str] = MappingProxyType({})

    def question(self, probe: Probe) -> str:
        return probe.question

    def canonical(self, prediction: str, probe: Probe) -> str:
        return prediction

    def score(self, prediction: str, probe: Probe) -> ProbeScore:
        return score_probe(prediction, probe)
