"""The contract's events as JSON lines (one object a line, `type` first), both ways; nothing but plain values."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from deltamem.runtime.contract import Event, LaneDone, ReadProgress, TokenEvent, TurnDone, TurnStats


class WireError(ValueError):
    """A line that is no event of the contract."""


def encode(event: Event) -> dict[str, Any]:
    kind = {TokenEvent: "token", ReadProgress: "progress", LaneDone: "lane_done", TurnDone: "turn_done"}[type(event)]
    return {"type": kind, **asdict(event)}


def decode(record: dict[str, Any]) -> Event:
    try:
        kind = record.pop("type")
        if kind == "token":
            return TokenEvent(str(record["lane"]), str(record["text"]), int(record["token_id"]))
        if kind == "progress":
            return ReadProgress(str(record["lane"]), int(record["done"]), int(record["total"]))
        if kind == "lane_done":
            return LaneDone(str(record["lane"]), str(record["text"]), TurnStats(**record["stats"]))
        if kind == "turn_done":
            return TurnDone({lane: TurnStats(**stats) for lane, stats in record["stats"].items()},
                            dict(record["written_total"]), dict(record["diagnostics"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WireError(f"a malformed event from the server ({type(exc).__name__}: {exc})") from None
    raise WireError(f"an event of unknown type {kind!r} from the server")
