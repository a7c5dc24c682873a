"""What is running and how fast: models, device and dtype, context policy, and each lane's speed."""

from __future__ import annotations

from collections.abc import Mapping

from textual.content import Content
from textual.widget import Widget

from deltamem.runtime.contract import TurnStats


def speed(stats: TurnStats | None) -> str:
    """`31.2 tok/s · ttft 0.12 s`, with dashes for what the turn did not measure."""
    if stats is None:
        return "—"
    rate = f"{stats.tokens_per_s:.1f} tok/s" if stats.tokens_per_s else "— tok/s"
    first = f"ttft {stats.ttft_s:.2f} s" if stats.ttft_s is not None else "ttft —"
    return f"{rate} · {first}"


class StatusBar(Widget):
    """Two lines: the run's identity (`info`, in order), then each lane's last tokens/s and time to first token and
    a note.

    With the `-clipped` class, a line too long for the screen ends in an ellipsis instead of wrapping.
    """

    DEFAULT_CSS = """
    StatusBar {
        height: 2;
        padding: 0 1;
        background: $panel;
    }

    StatusBar.-clipped {
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, info: Mapping[str, str], lanes: Mapping[str, str], *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.info = dict(info)
        self.titles = dict(lanes)
        self.stats: dict[str, TurnStats | None] = dict.fromkeys(lanes)
        self.paused: set[str] = set()
        self.note = ""  # after the lanes' speeds (the chat's vote tally)

    def set_info(self, key: str, value: str) -> None:
        self.info[key] = value
        self.refresh()

    def clear_info(self, key: str) -> None:
        if self.info.pop(key, None) is not None:
            self.refresh()

    def set_lane(self, lane: str, stats: TurnStats | None) -> None:
        self.stats[lane] = stats
        self.refresh()

    def set_note(self, note: str) -> None:
        self.note = note
        self.refresh()

    def set_paused(self, lane: str, paused: bool) -> None:
        if paused:
            self.paused.add(lane)
        else:
            self.paused.discard(lane)
        self.refresh()

    def render(self) -> Content:
        parts: list[str | tuple[str, str]] = []
        for index, (key, value) in enumerate(self.info.items()):
            parts.extend([" · " if index else "", (f"{key} ", "dim"), (value, "bold")])
        parts.append("\n")
        for index, (lane, title) in enumerate(self.titles.items()):
            shown = "paused" if lane in self.paused else speed(self.stats[lane])
            parts.extend(["    " if index else "", (f"{title} ", "bold $accent"), shown])
        if self.note:
            parts.extend(["    ", (self.note, "dim")])
        return Content.assemble(*parts)
