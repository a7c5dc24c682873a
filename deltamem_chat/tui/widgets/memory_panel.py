"""The memory, visible: per layer the state's norm as a heat strip over the turns, mean β and ‖Δo‖/‖o‖ per turn as
sparklines, and the write timeline (which message wrote how many tokens, where the trained horizon falls).

It draws a `MemoryTrace` (`deltamem_chat.memory_trace`), fed one point per turn from the engine's `TurnDone`, so it
costs nothing while hidden beyond keeping the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Label, Sparkline

from deltamem_chat.memory_trace import MemoryTrace, TracePoint, grouped
from deltamem_chat.text import one_line

#: The most rows the heat strip takes; deeper models average neighbouring layers into a row.
HEAT_ROWS = 8
#: The most recent turns listed under the timeline.
RECENT = 3
LABEL_WIDTH = 10
COLD, HOT = Color.parse("#1d3557").get_truecolor(), Color.parse("#ffd166").get_truecolor()


def heat(value: float, top: float) -> Style:
    """A cell's colour: from cold (empty) to hot (the largest norm shown)."""
    share = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    rgb = [round(c + (h - c) * share) for c, h in zip(COLD, HOT)]
    return Style(color=Color.from_rgb(*rgb))


class HeatStrip(Widget):
    """Rows of layers, a column per turn (the newest at the right), coloured by the state's norm."""

    DEFAULT_CSS = """
    HeatStrip { height: auto; }
    """

    def __init__(self, trace: MemoryTrace) -> None:
        super().__init__()
        self.trace = trace

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return max(1, len(grouped(self.trace.layer_norms(), HEAT_ROWS)))

    def render(self) -> Text:
        rows = grouped(self.trace.layer_norms(), HEAT_ROWS)
        if not rows:
            return Text("‖S‖ per layer: no turn yet", style="dim")
        columns = max(1, self.size.width - LABEL_WIDTH - 9)
        top = max((max(values[-columns:], default=0.0) for _, values in rows), default=0.0)
        text = Text(no_wrap=True)
        for index, (name, values) in enumerate(rows):
            text.append(f"{name:<{LABEL_WIDTH}}", style="bold" if index == 0 else "")
            for value in values[-columns:]:
                text.append("█", heat(value, top))
            text.append(f" {values[-1]:7.3f}" if values else "")
            if index < len(rows) - 1:
                text.append("\n")
        return text


class WriteTimeline(Widget):
    """The tokens written so far as one bar, a segment per turn, the horizon marked; the newest turns named."""

    DEFAULT_CSS = """
    WriteTimeline { height: auto; }
    """

    def __init__(self, trace: MemoryTrace) -> None:
        super().__init__()
        self.trace = trace

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return 2 + min(RECENT, len(self.trace.points))

    def render(self) -> Text:
        trace, points = self.trace, self.trace.points
        cells = max(10, self.size.width - LABEL_WIDTH)
        total = points[-1].total if points else 0
        scale = max(total, trace.horizon) / cells
        horizon_cell = min(cells - 1, int(trace.horizon / scale))
        bar = ["·"] * cells
        styles = ["dim"] * cells
        start = round(max(0, points[0].total - points[0].written) / scale) if points else 0
        for cell in range(min(start, cells)):   # written before the first turn shown (a reopened session)
            bar[cell], styles[cell] = "▒", "#4ea8de"
        for index, point in enumerate(points):
            end = min(cells, round(max(point.total, 0) / scale))
            for cell in range(start, end):
                bar[cell], styles[cell] = "█", ("#4ea8de" if index % 2 == 0 else "#7bd389")
            start = max(start, end)
        bar[horizon_cell], styles[horizon_cell] = "┃", "bold red"
        text = Text(no_wrap=True)
        text.append(f"{'writes':<{LABEL_WIDTH}}")
        for char, style in zip(bar, styles):
            text.append(char, style)
        mark = f"{trace.horizon:,} trained horizon"
        where = max(0, min(cells - len(mark), horizon_cell - len(mark) + 1))
        scale_line = f"{total:,} written".ljust(max(0, where)) + mark
        text.append("\n" + " " * LABEL_WIDTH + scale_line[:cells], style="dim")
        for number, point in list(enumerate(points, 1))[-RECENT:]:
            text.append(f"\n{'#' + str(number):<{LABEL_WIDTH}}")
            text.append(f"{point.written:>+7,} ", "bold")
            text.append(one_line(point.label, max(8, cells - 9)) or "(no message)")
        return text


class SparkRow(Horizontal):
    """A named diagnostic over the turns: its label, a sparkline, the newest value."""

    DEFAULT_CSS = """
    SparkRow { height: 1; }
    SparkRow > Label { width: 10; }
    SparkRow > Sparkline { width: auto; }
    SparkRow > .value { width: 8; }
    """

    def __init__(self, label: str, *, id: str) -> None:
        super().__init__(id=id)
        self.label = label
        self.values: list[float] = []

    def compose(self) -> ComposeResult:
        yield Label(self.label)
        yield Sparkline([], summary_function=max)
        yield Label("", classes="value")

    def show(self, values: list[float]) -> None:
        self.values = values
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """A cell per turn, as the heat strip above has, so the columns line up (the newest turns that fit; all of
        them until the row has a width)."""
        room = self.size.width - LABEL_WIDTH - 9
        shown = self.values[-room:] if room > 0 else self.values
        sparkline = self.query_one(Sparkline)
        sparkline.styles.width = max(1, len(shown))
        sparkline.data = shown
        self.query_one(".value", Label).update(f" {self.values[-1]:.3g}" if self.values else "")


class MemoryPanel(Vertical):
    """The memory of one lane over the conversation; hidden until toggled, fed whether shown or not."""

    DEFAULT_CSS = """
    MemoryPanel {
        height: auto;
        max-height: 50%;
        border: round $secondary;
        border-title-style: bold;
        padding: 0 1;
        display: none;
    }

    MemoryPanel.-shown { display: block; }
    """

    def __init__(self, horizon: int, title: str = "memory", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trace = MemoryTrace(horizon)
        self.border_title = title

    def compose(self) -> ComposeResult:
        yield HeatStrip(self.trace)
        yield SparkRow("mean β", id="beta")
        yield SparkRow("‖Δo‖/‖o‖", id="delta-o")
        yield WriteTimeline(self.trace)

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def toggle(self) -> None:
        self.toggle_class("-shown")
        self._redraw()

    def record(self, label: str, written: int, total: int, diagnostics: Mapping[str, float]) -> None:
        """One turn's point (drawn at once when the panel is shown)."""
        self.trace.add(label, written, total, diagnostics)
        self._redraw()

    def clear(self) -> None:
        self.trace.clear()
        self._redraw()

    def restore(self, points: list[TracePoint]) -> None:
        """The turns a saved conversation had, in place of the ones shown."""
        self.trace.points = list(points)
        self._redraw()

    def _redraw(self) -> None:
        if not self.shown or not self.is_mounted:
            return
        turns = len(self.trace.points)
        self.border_subtitle = f"{turns} turn{'s' if turns != 1 else ''}"
        self.query_one("#beta", SparkRow).show(self.trace.series("beta_mean"))
        self.query_one("#delta-o", SparkRow).show(self.trace.series("delta_o_ratio"))
        for widget in (self.query_one(HeatStrip), self.query_one(WriteTimeline)):
            widget.refresh(layout=True)
