"""The replay report's picture of the memory, as a plain SVG file beside the Markdown report.

The same three views as the TUI's memory panel, drawn from the report's turns (`MemoryTrace`): each layer's state
norm as a heat strip over the items, mean β and ‖Δo‖/‖o‖ per item as line charts, and the write timeline against the
trained horizon. Every element carries a `<title>` (the item and its numbers), which viewers show on hover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from deltamem.files import atomic_write_text
from deltamem.runtime.contract import DELTA
from deltamem_chat.memory_trace import MemoryTrace, grouped
from deltamem_chat.text import one_line

WIDTH = 760
LEFT = 90                      # room for the row labels
PLOT = WIDTH - LEFT - 20
HEAT_ROWS = 12
ROW_H = 14
CHART_H = 56
COLD, HOT = (0x1D, 0x35, 0x57), (0xFF, 0xD1, 0x66)


def picture_name(markdown: Path) -> str:
    """The SVG's file name beside a Markdown report `r.md`: `r.memory.svg`."""
    return f"{markdown.stem}.memory.svg"


def trace_of(report: dict[str, Any], lane: str = DELTA) -> MemoryTrace:
    """The memory lane's trace over the report's turns (empty when the lane did not run)."""
    trace = MemoryTrace(int(report["summary"]["budget"]["horizon"]))
    before = 0
    for turn in report["turns"]:
        memory = turn.get("memory", {})
        if lane not in memory.get("diagnostics", {}):
            continue
        total = int(memory["written_total"].get(lane, before))
        label = f"{turn['index'] + 1}. {turn['role']}: {turn['text']}"
        trace.add(label, total - before, total, memory["diagnostics"][lane])
        before = total
    return trace


def _heat(value: float, top: float) -> str:
    share = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    return "#" + "".join(f"{round(c + (h - c) * share):02x}" for c, h in zip(COLD, HOT))


def _text(x: float, y: float, text: str, anchor: str = "start", *, size: int = 11, bold: bool = False,
          fill: str = "#222") -> str:
    weight = " font-weight='bold'" if bold else ""
    return (f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-family='monospace' font-size='{size}' "
            f"fill='{fill}'{weight}>{escape(text)}</text>")


def _heading(y: float, text: str) -> str:
    return _text(8, y + 10, text, bold=True)


def _hover(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _heat_strip(trace: MemoryTrace, top_y: float) -> tuple[list[str], float]:
    rows = grouped(trace.layer_norms(), HEAT_ROWS)
    out = [_heading(top_y, "‖S‖ per layer over the items (brighter: a larger state norm)")]
    y = top_y + 18
    turns = len(trace.points)
    cell = PLOT / max(1, turns)
    top = max((max(values, default=0.0) for _, values in rows), default=0.0)
    for name, values in rows:
        out.append(_text(8, y + ROW_H - 3, name))
        for index, value in enumerate(values):
            point = trace.points[index]
            out.append(f"<rect x='{LEFT + index * cell:.2f}' y='{y:.1f}' width='{cell:.2f}' height='{ROW_H - 1}' "
                       f"fill='{_heat(value, top)}'>{_hover(f'{name} · {one_line(point.label, 80)} · ‖S‖ {value:.4g}')}"
                       "</rect>")
        y += ROW_H
    if not rows:
        out.append(_text(LEFT, y + 10, "no per-layer norms were reported"))
        y += ROW_H
    return out, y + 10


def _chart(trace: MemoryTrace, key: str, name: str, top_y: float, colour: str) -> tuple[list[str], float]:
    values = trace.series(key)
    low, high = min(values, default=0.0), max(values, default=0.0)
    span = (high - low) or 1.0
    step = PLOT / max(1, len(values) - 1)
    y0 = top_y + 16

    def at(index: int, value: float) -> tuple[float, float]:
        return LEFT + index * step, y0 + CHART_H - (value - low) / span * CHART_H

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (at(i, v) for i, v in enumerate(values)))
    out = [_heading(top_y, f"{name} per item"),
           f"<rect x='{LEFT}' y='{y0:.1f}' width='{PLOT}' height='{CHART_H}' fill='none' stroke='#999' "
           "stroke-width='0.5'/>",
           _text(LEFT - 4, y0 + 9, f"{high:.3g}", "end"), _text(LEFT - 4, y0 + CHART_H, f"{low:.3g}", "end")]
    if len(values) > 1:
        out.append(f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='1.5'/>")
    for index, value in enumerate(values):
        x, y = at(index, value)
        label = one_line(trace.points[index].label, 80)
        out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2' fill='{colour}'>{_hover(f'{label} · {value:.4g}')}"
                   "</circle>")
    return out, y0 + CHART_H + 12


def _timeline(trace: MemoryTrace, top_y: float) -> tuple[list[str], float]:
    points = trace.points
    total = points[-1].total if points else 0
    scale = PLOT / max(total, trace.horizon, 1)
    y = top_y + 16
    out = [_heading(top_y, "writes: each item's tokens, against the trained horizon"),
           f"<rect x='{LEFT}' y='{y:.1f}' width='{PLOT}' height='16' fill='#eee'/>"]
    for index, point in enumerate(points):
        if point.written <= 0:
            continue
        x = LEFT + (point.total - point.written) * scale
        colour = "#4ea8de" if index % 2 == 0 else "#7bd389"
        hover = _hover(f"{one_line(point.label, 80)} · {point.written:,} tokens written ({point.total:,} in all)")
        out.append(f"<rect x='{x:.2f}' y='{y:.1f}' width='{max(0.5, point.written * scale):.2f}' height='16' "
                   f"fill='{colour}'>{hover}</rect>")
    horizon_x = LEFT + trace.horizon * scale
    out += [f"<line x1='{horizon_x:.1f}' y1='{y - 4:.1f}' x2='{horizon_x:.1f}' y2='{y + 20:.1f}' stroke='#d62828' "
            "stroke-width='2'/>",
            _text(horizon_x, y + 32, f"{trace.horizon:,} trained horizon", "end", fill="#d62828"),
            _text(LEFT, y + 32, f"{total:,} tokens written")]
    crossed = trace.horizon_turn
    if crossed is not None:
        out.append(_text(LEFT, y + 46, f"past the horizon from {one_line(points[crossed].label, 70)}",
                         fill="#d62828"))
        return out, y + 56
    return out, y + 42


def memory_svg(trace: MemoryTrace, title: str) -> str:
    """The picture as SVG text."""
    parts: list[str] = [_text(8, 18, title, size=13, bold=True)]
    chunk, y = _heat_strip(trace, 30.0)
    parts += chunk
    for key, name, colour in (("beta_mean", "mean β (write strength)", "#e76f51"),
                              ("delta_o_ratio", "‖Δo‖/‖o‖ (how much the memory changes attention)", "#2a9d8f")):
        chunk, y = _chart(trace, key, name, y, colour)
        parts += chunk
    chunk, y = _timeline(trace, y)
    parts += chunk
    height = round(y + 8)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
            f"viewBox='0 0 {WIDTH} {height}' role='img' aria-label={quoteattr(title)}>\n"
            f"<rect width='{WIDTH}' height='{height}' fill='white'/>\n" + "\n".join(parts) + "\n</svg>\n")


def has_picture(report: dict[str, Any]) -> bool:
    """Whether the report has a memory to draw (a memory lane ran at least one item)."""
    return bool(trace_of(report).points)


def write_memory_svg(report: dict[str, Any], markdown: Path) -> Path | None:
    """Write the report's picture beside `markdown` (atomically; `SaveError` when it cannot be); None when no memory
    lane ran."""
    trace = trace_of(report)
    if not trace.points:
        return None
    title = f"δ-mem memory · {report['config'].get('title') or report['config'].get('transcript') or 'replay'}"
    return atomic_write_text(markdown.parent / picture_name(markdown), memory_svg(trace, str(title)))
