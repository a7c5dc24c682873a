"""Scored probes per lane, and the totals a report shows: per lane, and per benchmark category."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deltamem_chat.scoring.interface import ProbeScore, ScoringProtocol
from deltamem_chat.scoring.ours import OursProtocol

if TYPE_CHECKING:
    from deltamem_chat.transcripts.model import Category, Probe

_OURS = OursProtocol()


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe's replies and scores in every lane (e.g. "frozen" and "delta"), under one protocol."""

    probe_index: int
    question: str
    expected: str
    answers: dict[str, str]
    scores: dict[str, ProbeScore]
    category: Category | None = None
    protocol: str = "ours"

    @classmethod
    def from_answers(
        cls, probe_index: int, probe: Probe, answers: Mapping[str, str], protocol: ScoringProtocol | None = None
    ) -> ProbeOutcome:
        """Score each lane's raw reply to `probe` (cut by `protocol.canonical` first; default: ours), keeping the
        lanes in the order given and the replies as they were."""
        protocol = protocol or _OURS
        return cls(
            probe_index=probe_index,
            question=probe.question,
            expected=probe.answer,
            answers=dict(answers),
            scores={lane: protocol.score(protocol.canonical(reply, probe), probe) for lane, reply in answers.items()},
            category=probe.category,
            protocol=protocol.name,
        )

    @property
    def disagrees(self) -> bool:
        """True when some lane hit and another missed: the probes worth looking at first."""
        return len({score.hit for score in self.scores.values()}) > 1


@dataclass(frozen=True)
class CategorySummary:
    """One lane's totals over the probes of one category."""

    category: Category | None
    probes: int
    hits: int
    mean_score: float


@dataclass(frozen=True)
class LaneSummary:
    """One lane's totals over all probes it answered.

    `recall` and `mean_f1` follow our rule under every protocol; `mean_score` is the mean of the protocol's score.
    `categories` is empty when no probe has a category; otherwise it holds every category in order (numbers, then
    names), with the probes that have none under None, last.
    """

    lane: str
    probes: int
    hits: int
    recall: float
    mean_f1: float
    mean_score: float
    categories: dict[Category | None, CategorySummary] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreSummary:
    """Per-lane totals, and the outcomes with lane disagreements first (each group in probe order).

    `protocol` names the protocol the outcomes were scored under (None when there are none).
    """

    lanes: dict[str, LaneSummary]
    outcomes: list[ProbeOutcome]
    protocol: str | None = None

    @property
    def disagreements(self) -> list[ProbeOutcome]:
        return [outcome for outcome in self.outcomes if outcome.disagrees]


def _category_order(category: Category | None) -> tuple[int, int, str]:
    if category is None:
        return (2, 0, "")
    if isinstance(category, int):
        return (0, category, "")
    return (1, 0, category)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _lane_summary(lane: str, scored: list[tuple[Category | None, ProbeScore]]) -> LaneSummary:
    groups: dict[Category | None, list[ProbeScore]] = {}
    for category, score in scored:
        groups.setdefault(category, []).append(score)
    categories = {} if set(groups) == {None} else {
        category: CategorySummary(
            category=category,
            probes=len(groups[category]),
            hits=sum(score.hit for score in groups[category]),
            mean_score=_mean([score.score for score in groups[category]]),
        )
        for category in sorted(groups, key=_category_order)
    }
    scores = [score for _, score in scored]
    hits = sum(score.hit for score in scores)
    return LaneSummary(
        lane=lane,
        probes=len(scores),
        hits=hits,
        recall=hits / len(scores),
        mean_f1=_mean([score.f1 for score in scores]),
        mean_score=_mean([score.score for score in scores]),
        categories=categories,
    )


def summarise(results: Iterable[ProbeOutcome]) -> ScoreSummary:
    """Total each lane (lanes in order of first appearance) and put disagreeing probes first.

    Raises ValueError when the outcomes were scored under different protocols: their scores do not add up.
    """
    results = sorted(results, key=lambda outcome: outcome.probe_index)
    protocols = {outcome.protocol for outcome in results}
    if len(protocols) > 1:
        raise ValueError(f"cannot total probes scored under different protocols ({', '.join(sorted(protocols))})")
    per_lane: dict[str, list[tuple[Category | None, ProbeScore]]] = {}
    for outcome in results:
        for lane, score in outcome.scores.items():
            per_lane.setdefault(lane, []).append((outcome.category, score))
    lanes = {lane: _lane_summary(lane, scored) for lane, scored in per_lane.items()}
    ordered = [o for o in results if o.disagrees] + [o for o in results if not o.disagrees]
    return ScoreSummary(lanes=lanes, outcomes=ordered, protocol=protocols.pop() if protocols else None)
