"""What a scoring protocol is: the text it asks, how it cuts a reply, and the score it gives one probe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from deltamem_chat.transcripts.model import Category, Probe


@dataclass(frozen=True)
class ProbeScore:
    """How one reply to one probe scored.

    `hit` and `f1` always follow our own rule (`deltamem_chat.scoring.ours`), whatever the protocol, so a lane's
    recall and "the lanes differ" mean the same under every protocol. `score` is the protocol's headline number for
    this probe, and `metrics` holds every number the protocol defines, the headline included.
    """

    hit: bool
    f1: float
    score: float
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class ScoringProtocol(Protocol):
    """A way of asking and scoring probes: ours, LoCoMo's or MemoryAgentBench's.

    `name` is the registry key, `headline` the metric that `ProbeScore.score` carries, `metric_names` every key of
    `ProbeScore.metrics`, and `category_names` a display name per benchmark category (empty when there are none).
    """

    name: str
    headline: str
    metric_names: tuple[str, ...]
    category_names: Mapping[Category, str]

    def question(self, probe: Probe) -> str:
        """The text to ask for `probe`."""
        ...

    def canonical(self, prediction: str, probe: Probe) -> str:
        """A raw model reply cut the way this protocol cuts it before scoring."""
        ...

    def score(self, prediction: str, probe: Probe) -> ProbeScore:
        """Score an (already canonical) reply to `probe`."""
        ...
