"""The footer, on two rows when its keys do not fit on one (a narrow terminal), so that none is cut off.

Textual's `Footer` lays its keys out on one row and lets the last ones scroll out of sight under the palette key.
`KeyFooter` measures them after every change of keys or width: when one row is too narrow and two rows are wide
enough, the keys fill a grid of two rows, their columns as wide as their widest key; when even two rows are too
narrow (a very small terminal), it stays one row, as Textual draws it.
"""

from __future__ import annotations

from math import ceil

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # not exported; the pinned Textual (8.2) is the one measured


def key_width(key: FooterKey) -> int:
    """The cells a key takes on one row: its label, description and padding as drawn, and a cell after it."""
    return key.render().cell_len + 1


class KeyFooter(Footer):
    """A `Footer` that takes a second row rather than hide keys."""

    DEFAULT_CSS = """
    KeyFooter.-two-rows {
        layout: grid;
        grid-columns: auto;
        grid-rows: 1;
        grid-gutter: 0 1;
        height: 2;
    }

    KeyFooter.-two-rows FooterKey {
        margin: 0;   /* a cell is as wide as its key: the gutter keeps them apart */
    }
    """

    def compose(self) -> ComposeResult:
        yield from super().compose()
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.fit()

    def fit(self) -> None:
        """One row if the keys fit, else two if those fit."""
        keys = [key for key in self.query_children(FooterKey) if not key.has_class("-command-palette")]
        palette = sum(key_width(key) + 1 for key in self.query_children(".-command-palette"))  # + its left border
        room = self.size.width - palette
        widths = [key_width(key) for key in keys]
        columns = ceil(len(widths) / 2)
        two_rows = [max(widths[column::columns]) for column in range(columns)]
        wrap = sum(widths) > room and sum(two_rows) <= room
        if wrap:
            self.styles.grid_size_columns = columns
        self.set_class(wrap, "-two-rows")
