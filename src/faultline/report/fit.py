"""Tables that fit the width they are printed at: lighter borders first, then fewer columns.

What lives here: `Col` (a column: its header, its layout and its place in the order of
dropping) and `FitTable`, a rich renderable that lays itself out when the width is known.
It keeps the table as configured if everything fits; else it tries light borders (a rule
under the header, no boxes); else it drops droppable columns, `drop=1` first, then 2 and
so on, until the rest fit without cutting a cell, and a caption names what it left out.

Rule kept: no cell is ever cut with an ellipsis.  A key column (`drop=0`) is never
dropped; its cells keep their full width (wrapping only at spaces if `wrap`), and only a
key cell wider than the whole terminal is folded onto more lines.  Every `str` cell
becomes a `Text`, so user strings never pass through markup.  Must not be added:
formatting of values (the caller's), or choosing which columns a table has.

    width ok with the given box? --> as given
    else with light borders?     --> light
    else drop the next `drop` and retry --> ... --> key columns only, folded
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.measure import Measurement
from rich.style import StyleType
from rich.table import Table
from rich.text import Text, TextType

__all__ = ["Col", "FitTable"]

_UNBOUNDED = 10_000           # a width at which nothing wraps: measures natural widths
_LIGHT: dict[str, Any] = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False}


@dataclass(frozen=True, slots=True)
class Col:
    """One column.  `drop` 0: always shown; N: the Nth column to go when the table does
    not fit.  `wrap`: cells may break at spaces (else each cell keeps to one line)."""

    header: str
    drop: int = 0
    justify: JustifyMethod = "left"
    wrap: bool = False
    style: StyleType = ""


@dataclass(frozen=True, slots=True)
class _Layout:
    """One candidate: the columns kept (indices), the table options, whether to fold."""

    keep: tuple[int, ...]
    options: dict[str, Any]
    fold: bool = False


class FitTable:
    """A table laid out at print time to fit the console width (see the module header)."""

    def __init__(self, cols: Sequence[Col], rows: Iterable[Sequence[TextType]],
                 **table: Any) -> None:
        self.cols = list(cols)
        self.rows = [[Text(c) if isinstance(c, str) else c for c in row] for row in rows]
        self.table = table                     # rich.table.Table's own options

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.layout(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.layout(console, options))

    def layout(self, console: Console, options: ConsoleOptions) -> Table:
        """The rich Table for `options.max_width` columns."""
        width = options.max_width
        wide = options.update_width(_UNBOUNDED)
        spans = [self._span(console, wide, i) for i in range(len(self.cols))]
        for cand in self._candidates():
            overhead = self._overhead(console, wide, cand, spans)
            need = overhead + sum(spans[i][0] for i in cand.keep)
            if need <= width:
                return self._build(cand, spans, width - overhead)
        return self._build(cand, spans, None)

    # ------------------------------------------------------------ candidates

    def _candidates(self) -> Iterable[_Layout]:
        """As configured; light borders; then fewer columns; last, key columns folded."""
        keep = list(range(len(self.cols)))
        yield _Layout(tuple(keep), self.table)
        light = {**self.table, **_LIGHT}
        droppable = sorted(((c.drop, i) for i, c in enumerate(self.cols) if c.drop),
                           reverse=True)
        while True:
            yield _Layout(tuple(keep), light)
            if not droppable:
                break
            keep.remove(droppable.pop()[1])
        yield _Layout(tuple(keep), light, fold=True)

    # ------------------------------------------------------------ measuring

    def _span(self, console: Console, wide: ConsoleOptions, i: int) -> tuple[int, int]:
        """Column i's (least, natural) content width: least is the longest word if it
        wraps, else its longest cell (a one-line cell is never narrowed)."""
        col = self.cols[i]
        cells = [Text(col.header), *(row[i] for row in self.rows)]
        sizes = [Measurement.get(console, wide, c) for c in cells]
        natural = max(m.maximum for m in sizes)
        return (max(m.minimum for m in sizes) if col.wrap else natural), natural

    def _overhead(self, console: Console, wide: ConsoleOptions, cand: _Layout,
                  spans: Sequence[tuple[int, int]]) -> int:
        """Borders and padding: what the table adds around its cells' widths."""
        total = Measurement.get(console, wide, self._build(cand, spans, None)).maximum
        return total - sum(spans[i][1] for i in cand.keep)

    # ------------------------------------------------------------ building

    def _build(self, cand: _Layout, spans: Sequence[tuple[int, int]], room: int | None
               ) -> Table:
        """The table of `cand`; with `room` (content width to share), wrapping columns
        get fixed widths between their least and natural ones, so rich never narrows a
        column below its longest word."""
        options = dict(cand.options)
        dropped = [self.cols[i].header for i in range(len(self.cols)) if i not in cand.keep]
        if dropped:
            note = f"not shown at this width: {', '.join(dropped)}"
            caption = options.get("caption")
            options["caption"] = f"{caption}\n{note}" if caption else note
            options.setdefault("caption_justify", "left")
        table = Table(**options)
        widths = self._widths(cand, spans, room)
        for i in cand.keep:
            col = self.cols[i]
            table.add_column(col.header, justify=col.justify, style=col.style,
                             no_wrap=not (col.wrap or cand.fold), overflow="fold",
                             width=widths.get(i))
        for row in self.rows:
            table.add_row(*(row[i] for i in cand.keep))
        return table

    def _widths(self, cand: _Layout, spans: Sequence[tuple[int, int]], room: int | None
                ) -> dict[int, int]:
        """Fixed widths of the wrapping columns when their natural widths do not fit
        `room`: each starts at its least width, the narrowest grows first."""
        wraps = [i for i in cand.keep if self.cols[i].wrap]
        if room is None or not wraps:
            return {}
        room -= sum(spans[i][1] for i in cand.keep if not self.cols[i].wrap)
        if sum(spans[i][1] for i in wraps) <= room:
            return {}
        widths = {i: spans[i][0] for i in wraps}
        room -= sum(widths.values())
        while room > 0:
            growing = [i for i in wraps if widths[i] < spans[i][1]]
            if not growing:
                break
            widths[min(growing, key=widths.__getitem__)] += 1
            room -= 1
        return widths
