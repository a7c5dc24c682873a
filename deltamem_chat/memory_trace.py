"""The memory over a conversation: what each turn wrote, and the engine's diagnostics after it, turn by turn.

Both the chat's memory panel and the replay report's picture read a `MemoryTrace`, built from the `TurnDone`s the
engine reports (its `diagnostics`: mean β, ‖Δo‖/‖o‖, ‖S‖ and each layer's ‖S‖ as `state_norm.<i>`), so the two show
the same numbers, and a remote engine's plain data is enough. A chat keeps its trace in the saved session
(`points_to_saved`, `points_from_saved`), so a reopened conversation shows the turns it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

LAYER_NORM = "state_norm."


class TraceError(ValueError):
    """A saved trace is not what `points_to_saved` writes; the message names the turn and the field."""


@dataclass(frozen=True)
class TracePoint:
    """One turn of one memory lane: the message that wrote, how much, the total after, the diagnostics after."""

    label: str
    written: int
    total: int
    diagnostics: Mapping[str, float]


@dataclass
class MemoryTrace:
    """The turns of one memory lane, in order, against the horizon its adapter was trained on."""

    horizon: int
    points: list[TracePoint] = field(default_factory=list)

    def add(self, label: str, written: int, total: int, diagnostics: Mapping[str, float]) -> None:
        self.points.append(TracePoint(label, written, total, dict(diagnostics)))

    def clear(self) -> None:
        self.points.clear()

    def series(self, key: str) -> list[float]:
        """A diagnostic over the turns (0 where a turn did not report it)."""
        return [point.diagnostics.get(key, 0.0) for point in self.points]

    @property
    def layers(self) -> int:
        """How many layers report their own state norm."""
        return max((sum(1 for k in point.diagnostics if k.startswith(LAYER_NORM)) for point in self.points),
                   default=0)

    def layer_norms(self) -> list[list[float]]:
        """Per layer (rows), each turn's state norm (columns)."""
        return [self.series(f"{LAYER_NORM}{layer}") for layer in range(self.layers)]

    @property
    def horizon_turn(self) -> int | None:
        """The index of the turn whose writes crossed the horizon, if one did."""
        return next((index for index, point in enumerate(self.points) if point.total > self.horizon), None)


def grouped(rows: list[list[float]], limit: int) -> list[tuple[str, list[float]]]:
    """At most `limit` rows, neighbouring layers averaged together in groups of near-equal size, each named by its
    layers (`L3` or `L4-7`)."""
    count = min(len(rows), max(1, limit))
    bounds = [round(index * len(rows) / count) for index in range(count + 1)] if rows else []
    out = []
    for start, end in zip(bounds, bounds[1:]):
        group = rows[start:end]
        name = f"L{start}" if len(group) == 1 else f"L{start}-{end - 1}"
        out.append((name, [sum(column) / len(group) for column in zip(*group)]))
    return out


def points_to_saved(points: list[TracePoint]) -> list[dict[str, object]]:
    """The turns as a session's JSON holds them."""
    return [{"label": p.label, "written": p.written, "total": p.total, "diagnostics": dict(p.diagnostics)}
            for p in points]


def points_from_saved(saved: object) -> list[TracePoint]:
    """A session's saved trace, checked field by field (none saved: no turn)."""
    if saved is None:
        return []
    if not isinstance(saved, list):
        raise TraceError("the session's memory panel: expected a list of turns")
    points = []
    for number, turn in enumerate(saved, 1):
        where = f"the session's memory panel, turn {number}"
        if not isinstance(turn, dict) or set(turn) != {"label", "written", "total", "diagnostics"}:
            raise TraceError(f"{where}: expected label, written, total and diagnostics")
        if not isinstance(turn["label"], str):
            raise TraceError(f"{where}: label must be text")
        for key in ("written", "total"):
            if not isinstance(turn[key], int) or isinstance(turn[key], bool):
                raise TraceError(f"{where}: {key} must be a whole number")
        diagnostics = turn["diagnostics"]
        if not isinstance(diagnostics, dict) or not all(
                isinstance(value, (int, float)) and not isinstance(value, bool) for value in diagnostics.values()):
            raise TraceError(f"{where}: diagnostics must map names to numbers")
        points.append(TracePoint(turn["label"], turn["written"], turn["total"],
                                 {str(key): float(value) for key, value in diagnostics.items()}))
    return points
