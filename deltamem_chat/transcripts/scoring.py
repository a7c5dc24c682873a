"""Score recall probes the way SQuAD and LoCoMo do, so numbers are comparable with published ones.

A probe is a *hit* when the expected answer (or an alias) appears, as whole words, in the normalised
reply; token F1 gives partial credit for replies that are close but not exact.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deltamem_chat.transcripts.model import Probe

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


@dataclass(frozen=True)
class ProbeScore:
    """How one lane's reply to one probe scored."""

    hit: bool
    f1: float


def score_probe(prediction: str, probe: Probe) -> ProbeScore:
    """Score a reply against a probe; F1 is the best over the answer and its aliases."""
    f1 = max(token_f1(prediction, gold) for gold in (probe.answer, *probe.aliases))
    return ProbeScore(hit=is_hit(prediction, probe.answer, probe.aliases), f1=f1)


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe's replies and scores in every lane (e.g. "frozen" and "delta")."""

    probe_index: int
    question: str
    expected: str
    answers: dict[str, str]
    scores: dict[str, ProbeScore]

    @classmethod
    def from_answers(cls, probe_index: int, probe: Probe, answers: Mapping[str, str]) -> ProbeOutcome:
        """Score each lane's reply to `probe`, keeping the lanes in the order given."""
        return cls(
            probe_index=probe_index,
            question=probe.question,
            expected=probe.answer,
            answers=dict(answers),
            scores={lane: score_probe(reply, probe) for lane, reply in answers.items()},
        )

    @property
    def disagrees(self) -> bool:
        """True when some lane hit and another missed: the probes worth looking at first."""
        return len({score.hit for score in self.scores.values()}) > 1


@dataclass(frozen=True)
class LaneSummary:
    """One lane's totals over all probes it answered."""

    lane: str
    probes: int
    hits: int
    recall: float
    mean_f1: float


@dataclass(frozen=True)
class ScoreSummary:
    """Per-lane totals, and the outcomes with lane disagreements first (each group in probe order)."""

    lanes: dict[str, LaneSummary]
    outcomes: list[ProbeOutcome]

    @property
    def disagreements(self) -> list[ProbeOutcome]:
        return [outcome for outcome in self.outcomes if outcome.disagrees]


def summarise(results: Iterable[ProbeOutcome]) -> ScoreSummary:
    """Total each lane (lanes in order of first appearance) and put disagreeing probes first."""
    results = sorted(results, key=lambda outcome: outcome.probe_index)
    per_lane: dict[str, list[ProbeScore]] = {}
    for outcome in results:
        for lane, score in outcome.scores.items():
            per_lane.setdefault(lane, []).append(score)
    lanes = {
        lane: LaneSummary(
            lane=lane,
            probes=len(scores),
            hits=sum(score.hit for score in scores),
            recall=sum(score.hit for score in scores) / len(scores),
            mean_f1=sum(score.f1 for score in scores) / len(scores),
        )
        for lane, scores in per_lane.items()
    }
    ordered = [o for o in results if o.disagrees] + [o for o in results if not o.disagrees]
    return ScoreSummary(lanes=lanes, outcomes=ordered)
