"""The δ-mem write budget: tokens written into memory against the horizon the adapter was trained on.

Past the horizon the memory keeps working but nothing in the paper covers it, so the meter turns to a warning.
Reusable: the replay screen feeds it the same way, through `update`.
"""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from deltamem.context import TRAINED_WRITE_HORIZON

BAR_CELLS = 32

#: How each diagnostic is labelled, in display order.
DIAGNOSTICS = (("state_norm", "‖S‖"), ("beta_mean", "mean β"), ("delta_o_ratio", "‖Δo‖/‖o‖"))

STATUS_NOTES = {"warning": "⚠ past the trained horizon", "stopped": "⚠ past the trained horizon: writes stopped"}


class BudgetMeter(Widget):
    """Tokens written / horizon with a bar, the turn's increment, the budget status and the memory diagnostics."""

    DEFAULT_CSS = """
    BudgetMeter {
        height: 4;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
    }

    BudgetMeter.-warning,
    BudgetMeter.-stopped {
        border: round $warning;
        border-title-color: $warning;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "δ-mem memory"
        self.written = 0
        self.horizon = TRAINED_WRITE_HORIZON
        self.increment = 0
        self.status = "ok"
        self.diagnostics: dict[str, float] = {}
        self.estimated = False

    def update(self, written: int, horizon: int, increment: int, status: str,
               diagnostics: dict[str, float] | None = None, *, estimated: bool = False) -> None:
        """Show new numbers; `estimated` while streaming (the prompt's writes are only counted at the end)."""
        self.written, self.horizon, self.increment, self.status = written, horizon, increment, status
        if diagnostics is not None:
            self.diagnostics = diagnostics
        self.estimated = estimated
        for name in ("ok", "warning", "stopped"):
            self.set_class(status == name, f"-{name}")
        self.refresh()

    @property
    def label(self) -> str:
        """The counts as text: `~` marks an estimate made while streaming."""
        if self.estimated:
            return (f"~{self.written:,} / {self.horizon:,} tokens written · +{self.increment:,} so far, "
                    "the prompt counted at the end")
        return f"{self.written:,} / {self.horizon:,} tokens written · +{self.increment:,} last turn"

    def render(self) -> Content:
        filled = min(BAR_CELLS, round(BAR_CELLS * self.written / self.horizon)) if self.horizon else BAR_CELLS
        fill_style = "$primary" if self.status == "ok" else "$warning"
        parts: list[str | tuple[str, str]] = [("━" * filled, fill_style), ("━" * (BAR_CELLS - filled), "dim"),
                                              "  ", self.label]
        parts.append("\n")
        if self.status in STATUS_NOTES:
            parts.extend([(STATUS_NOTES[self.status], "bold $warning"), "   "])
        shown = [f"{label} {self.diagnostics[key]:.3g}" for key, label in DIAGNOSTICS if key in self.diagnostics]
        parts.append(("   ".join(shown) if shown else "diagnostics after the next turn", "dim"))
        return Content.assemble(*parts)
