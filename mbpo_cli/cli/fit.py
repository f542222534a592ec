"""Tables fitted to the terminal's width: numbers are never cut, names give way (shortened in the middle).

Left to itself, Rich shrinks every column of a table that is too wide, numbers included ('1,000.' for 1,000.0,
'last eva' for a header). Here each column says how it may give way (`Fit`), the widths are chosen before Rich
sees the table, and Rich gets fixed widths that add up to the terminal's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text


class Fit(Enum):
    """How a column gives way when its table is too wide."""

    WHOLE = "whole"
    """Never cut nor wrapped (numbers, ids, dates): as wide as its widest cell; only its header wraps at spaces."""
    WRAP = "wrap"
    """Text that wraps at spaces, never inside a word ('not reached by 125,000', 'interrupted (stale)')."""
    NAME = "name"
    """A name, shortened in the middle when room runs out ('tiny-inver…s1-d47066cd'): its end, which tells runs
    and variants apart, stays."""


@dataclass(frozen=True)
class Col:
    """One column of a fitted table."""

    header: str
    fit: Fit = Fit.WHOLE
    justify: JustifyMethod | None = None
    """Left for names and text, right for whole values, unless given."""
    keep: int = 12
    """A name keeps this many characters (or all, when shorter) until every header and text has wrapped."""
    style: str | None = None


def compact(**options: Any) -> Table:
    """A table with two spaces between columns, none at its edges, and a line under its header."""
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, **options)


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters: its start and its end around an ellipsis, the end the longer
    ('invertedpendulum-v5-model_free-s1-d47066cd', 20 -> 'invertedp…1-d47066cd')."""
    if len(text) <= width:
        return text
    if width < 2:
        return "…"[:max(width, 0)]
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


def chrome(table: Table, columns: int) -> int:
    """Characters a line of `table` with `columns` columns spends outside its cells, by Rich's rules: the edges
    and separators of its box, each cell's padding (collapsed padding keeps only the right side; without
    `pad_edge`, none at the table's two ends)."""
    _, right, _, left = table.padding
    if table.collapse_padding:
        left = 0
    padding = columns * (left + right) - (0 if table.pad_edge or not columns else left + right)
    lines = 0 if table.box is None else max(columns - 1, 0) + (2 if table.show_edge else 0)
    return padding + lines


def _longest_word(texts: Sequence[str]) -> int:
    return max((cell_len(word) for text in texts for word in text.split()), default=0)


def _natural(col: Col, cells: Sequence[str]) -> int:
    return max([cell_len(col.header), *(cell_len(cell) for cell in cells)])


def _floor(col: Col, cells: Sequence[str]) -> int:
    """The narrowest `col` gets before names shrink below their `keep` (a name's, that `keep`)."""
    if col.fit is Fit.NAME:
        return min(_natural(col, cells), col.keep)
    if col.fit is Fit.WRAP:
        return _longest_word([col.header, *cells])
    return max([_longest_word([col.header]), *(cell_len(cell) for cell in cells)])


def _shrink(widths: list[int], floors: dict[int, int], excess: int) -> int:
    """Narrow the widest of the columns in `floors` (index -> narrowest width), one character at a time, until
    `excess` characters are gone or every one is at its floor; the excess left."""
    while excess > 0:
        wider = [i for i, floor in floors.items() if widths[i] > floor]
        if not wider:
            break
        widest = max(wider, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return excess


def fit_widths(columns: Sequence[Col], rows: Sequence[Sequence[str]], room: int) -> list[int]:
    """Widths of `columns` that add up to at most `room` where possible: first names shrink to their `keep`, then
    the headers of whole values wrap at spaces, then text, then names shrink further. Whole values never shrink:
    a room too narrow for them leaves the table wider than `room`."""
    cells = [[row[i] for row in rows] for i in range(len(columns))]
    widths = [_natural(col, cells[i]) for i, col in enumerate(columns)]
    excess = sum(widths) - room
    for fit in (Fit.NAME, Fit.WHOLE, Fit.WRAP):
        excess = _shrink(widths, {i: _floor(col, cells[i]) for i, col in enumerate(columns) if col.fit is fit},
                         excess)
    _shrink(widths, {i: 1 for i, col in enumerate(columns) if col.fit is Fit.NAME}, excess)
    return widths


def fit(table: Table, columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> list[list[Text]]:
    """Add `columns` to `table`, sized for a terminal `width` columns wide; the rows' cells (plain text, never
    markup) for `table.add_row`, each name shortened to its column."""
    widths = fit_widths(columns, rows, width - chrome(table, len(columns)))
    for col, size in zip(columns, widths, strict=True):
        name = col.fit is Fit.NAME
        table.add_column(Text(col.header), justify=col.justify or ("right" if col.fit is Fit.WHOLE else "left"),
                         width=size, no_wrap=name, overflow="ellipsis" if name else "fold", style=col.style)
    return [[Text(shorten(cell, size) if col.fit is Fit.NAME else cell)
             for cell, col, size in zip(row, columns, widths, strict=True)] for row in rows]


def fitted(table: Table, columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> Table:
    """`table` with `columns` and `rows` added by `fit`."""
    for cells in fit(table, columns, rows, width):
        table.add_row(*cells)
    return table


def split_columns(probe: Table, columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int,
                  lead: int = 1) -> list[list[int]]:
    """Column indices for as many tables (styled like `probe`) as it takes to fit `width` without shrinking a
    name below its `keep`: each table has the first `lead` columns and as many of the others, in order, as fit
    beside them (one at least)."""
    floors = [_floor(col, [row[i] for row in rows]) for i, col in enumerate(columns)]
    groups: list[list[int]] = []
    for i in range(lead, len(columns)):
        current = groups[-1] if groups else None
        if current is not None and sum(floors[j] for j in current) + floors[i] + chrome(probe, len(current) + 1) \
                <= width:
            current.append(i)
        else:
            groups.append([*range(lead), i])
    return groups or [list(range(lead))]


def fmt_number(value: float | None, spec: str = ",.1f", missing: str = "-") -> str:
    """A cell's number formatted with `spec`; `missing` for None or NaN."""
    return missing if value is None or value != value else format(value, spec)
