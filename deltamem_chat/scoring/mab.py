"""MemoryAgentBench's string metrics, as HUST-AI-HYZ/MemoryAgentBench's `utils/eval_other_utils.py` computes them.

For each gold answer (the probe's answer and aliases; each metric is the best over them): exact match and substring
exact match of the normalised texts, token F1 (0 when either side is "yes", "no" or "noanswer" and the two differ),
and ROUGE-L / ROUGE-Lsum F1 and recall from the `rouge_score` library with Porter stemming, on the raw texts. As the
benchmark's default post-processing does, every metric is the better of the raw reply and its parsed answer (the text
after "Answer:", else the first line).

`score` is substring exact match: the benchmark's README maps the paper's "accuracy" for its QA tasks (accurate
retrieval, conflict resolution) to it. `deltamem_accuracy` is the δ-mem authors' own accuracy rule (a substring
match under a normaliser that turns punctuation into spaces), which can differ.

The benchmark has no string rule for questions the history never answers (it leaves LongMemEval's to an LLM judge), so
an abstention probe scores 1.0 on every metric when the reply abstains by our phrases, else 0.0.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from deltamem_chat.scoring.interface import ProbeScore
from deltamem_chat.scoring.ours import abstains, score_probe

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

    from deltamem_chat.transcripts.model import Category, Probe

#: Every metric `mab_metrics` returns, in MemoryAgentBench's JSON names, then δ-mem's accuracy.
MAB_METRICS: tuple[str, ...] = (
    "exact_match",
    "f1",
    "substring_exact_match",
    "rougeL_f1",
    "rougeL_recall",
    "rougeLsum_f1",
    "rougeLsum_recall",
    "deltamem_accuracy",
)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_SPECIAL = frozenset({"yes", "no", "noanswer"})
_ANSWER_LINE = re.compile("answer:(.*)(?:\n|$)", re.IGNORECASE)
_FIRST_LINE = re.compile("^(.*)(?:\n|$)")
_ANSWER_PREFIX = re.compile("^answer:", re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w\s]")
_ROUGE_TYPES = ("rougeL", "rougeLsum")


def normalize_answer(text: str) -> str:
    """MemoryAgentBench's normalisation: lower-case, delete ASCII punctuation, drop a/an/the, squeeze spaces."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def substring_exact_match(prediction: str, gold: str) -> bool:
    """The normalised gold occurs anywhere in the normalised prediction (not only as whole words)."""
    return normalize_answer(gold) in normalize_answer(prediction)


def token_f1(prediction: str, gold: str) -> float:
    """Token F1 of the normalised texts; 0.0 when either is "yes", "no" or "noanswer" and they are not equal."""
    predicted, expected = normalize_answer(prediction), normalize_answer(gold)
    if (predicted in _SPECIAL or expected in _SPECIAL) and predicted != expected:
        return 0.0
    predicted_tokens, expected_tokens = predicted.split(), expected.split()
    same = sum((Counter(predicted_tokens) & Counter(expected_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted_tokens)
    recall = same / len(expected_tokens)
    return 2 * precision * recall / (precision + recall)


def parse_output(text: str) -> str:
    """The benchmark's answer parser: the rest of the line after the first "Answer:", else the first line."""
    match = _ANSWER_LINE.search(text) or _FIRST_LINE.search(text)
    extracted = match[1].strip() if match else ""
    return _ANSWER_PREFIX.sub("", extracted).strip()


@lru_cache(maxsize=1)
def _rouge() -> RougeScorer:
    from rouge_score.rouge_scorer import RougeScorer  # imports nltk (half a second): only when a score needs it

    return RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)


def calculate_metrics(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """The benchmark's metrics of one prediction: each the best over `golds`."""
    metrics = {
        "exact_match": max(float(exact_match(prediction, gold)) for gold in golds),
        "f1": max(token_f1(prediction, gold) for gold in golds),
        "substring_exact_match": max(float(substring_exact_match(prediction, gold)) for gold in golds),
    }
    rouge = [_rouge().score(target=gold, prediction=prediction) for gold in golds]
    for kind in _ROUGE_TYPES:
        metrics[f"{kind}_f1"] = max(scores[kind].fmeasure for scores in rouge)
        metrics[f"{kind}_recall"] = max(scores[kind].recall for scores in rouge)
    return metrics


def _deltamem_normalize(text: str) -> str:
    text = _ARTICLES.sub(" ", text.lower())
    return " ".join(_NON_WORD.sub(" ", text).split())


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text.strip()


def deltamem_accuracy(prediction: str, golds: Iterable[str]) -> bool:
    """δ-mem's MemoryAgentBench accuracy: a normalised gold equals the reply or its first line, or occurs in it."""
    whole = _deltamem_normalize(prediction)
    first = _deltamem_normalize(_first_line(prediction))
    if not whole and not first:
        return False
    for gold in golds:
        normal = _deltamem_normalize(gold)
        if normal and (normal in (first, whole) or normal in whole):
            return True
    return False


def mab_metrics(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """Every metric in `MAB_METRICS` for one reply: the better of the raw reply and `parse_output` of it, as the
    benchmark's default post-processing takes, plus `deltamem_accuracy` of the raw reply."""
    raw = calculate_metrics(prediction, golds)
    parsed = calculate_metrics(parse_output(prediction), golds)
    metrics = {name: max(raw[name], parsed[name]) for name in raw}
    metrics["deltamem_accuracy"] = float(deltamem_accuracy(prediction, golds))
    return metrics


class MabProtocol:
    """MemoryAgentBench's metrics; the question and reply are used as they are (the metrics parse the reply)."""

    name = "mab"
    headline = "substring_exact_match"
    metric_names = MAB_METRICS
    category_names: Mapping[Category, str] = MappingProxyType({})

    def question(self, probe: Probe) -> str:
        return probe.question

    def canonical(self, prediction: str, probe: Probe) -> str:
        return prediction

    def score(self, prediction: str, probe: Probe) -> ProbeScore:
        ours = score_probe(prediction, probe)
        if probe.abstain:
            value = float(abstains(prediction))
            metrics = dict.fromkeys(MAB_METRICS, value)
        else:
            metrics = mab_metrics(prediction, (probe.answer, *probe.aliases))
        return ProbeScore(hit=ours.hit, f1=ours.f1, score=metrics["substring_exact_match"], metrics=metrics)
