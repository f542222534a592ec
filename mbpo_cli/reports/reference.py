"""Published learning curves to check a reproduction against (`mbpo compare --reference`).

A reference file is a small CSV of one curve over env steps::

    # label: MBPO on Hopper (4kubo/erl_lib)
    # any other comment line: where the numbers come from
    step,mean,low,high
    5000,166.6,34.0,299.1
    10000,329.0,92.6,565.3

Lines starting with ``#`` are comments; a ``# label: TEXT`` comment names the curve in the plot's legend (default:
the file's name). The header row is exactly ``step,mean,low,high``; steps are whole env steps, strictly increasing;
``low <= high`` on every row (``mean`` need not lie between them). One file, one curve: it is set beside every
compared group.

``--reference`` takes a path, or the name of a bundled curve (``mbpo-hopper``: :func:`bundled_names`). The bundled
curves live in ``mbpo_cli/reports/references/``: per algorithm (MBPO, DHMBPO, SAC, MACURA) and task (Hopper,
HalfCheetah, Walker2d, Ant, Humanoid), the mean, min and max over the rows at each 5,000th env step of the public
result CSVs of 4kubo/erl_lib (``results/main/gym/<folder>/<Task>.csv``); each file's comments say so.

At a milestone the curve's value is interpolated linearly between its steps, never extrapolated: a milestone
before its first step or after its last has no reference value. A seed is inside the range when its return at the
milestone (:data:`~mbpo_cli.reports.compare.curves.VALUES_AT_STEPS`) lies in ``[low, high]``, both ends included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mbpo_cli.reports.refs import ReportError

HEADER = ("step", "mean", "low", "high")
"""The columns of a reference file, in this order."""
BUNDLED_FOLDER = "references"
"""The folder of bundled curves, inside the ``mbpo_cli.reports`` package."""


@dataclass(frozen=True)
class Reference:
    """One published curve: ``steps`` strictly increasing, ``low <= high`` at each."""

    label: str
    """The legend's name for it (``# label:``, else the file's stem)."""
    source: str
    """The path given, or the bundled name."""
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def at(self, step: float) -> tuple[float, float, float] | None:
        """``(mean, low, high)`` at ``step``, linearly interpolated between the curve's steps; None outside them."""
        if step < self.steps[0] or step > self.steps[-1]:
            return None
        return (float(np.interp(step, self.steps, self.mean)), float(np.interp(step, self.steps, self.low)),
                float(np.interp(step, self.steps, self.high)))


@dataclass(frozen=True)
class ReferencePoint:
    """The reference at one milestone beside one group's seeds (mean, low, high and seeds_inside None where the
    reference has no value there)."""

    mean: float | None
    low: float | None
    high: float | None
    seeds_inside: int | None
    """How many of the group's seeds with a value at the milestone have their return in ``[low, high]``."""
    n_seeds: int
    """The group's seeds with a value at the milestone."""


def bundled_names() -> list[str]:
    """The names of the bundled curves (``mbpo-hopper``, ...), sorted."""
    folder = resources.files("mbpo_cli.reports").joinpath(BUNDLED_FOLDER)
    return sorted(entry.name.removesuffix(".csv") for entry in folder.iterdir() if entry.name.endswith(".csv"))


def load_reference(text: str) -> Reference:
    """The curve of ``text``: a bundled name (:func:`bundled_names`) or a path to a reference file.

    Raises:
        ReportError: one line naming the file (and the line) on a missing or unreadable file, a bad header, a
            non-numeric or non-finite value, steps not increasing, or low > high.
    """
    if text in bundled_names():
        entry = resources.files("mbpo_cli.reports").joinpath(BUNDLED_FOLDER).joinpath(f"{text}.csv")
        return parse_reference(entry.read_text(encoding="utf-8"), text, default_label=text)
    path = Path(text)
    if not path.is_file():
        raise ReportError(f"--reference: {text}: no such file, nor a bundled curve (mbpo compare --help lists them)")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ReportError(f"--reference: {text}: cannot read it ({reason})") from None
    return parse_reference(content, text, default_label=path.stem)


def _number(cell: str, column: str, where: str) -> float:
    """A finite float from ``cell``, or a ReportError naming ``where`` and the column."""
    try:
        value = float(cell)
    except ValueError:
        raise ReportError(f"{where}: {column} is not a number: {cell.strip()[:40]!r}") from None
    if not math.isfinite(value):
        raise ReportError(f"{where}: {column} is not finite: {cell.strip()[:40]!r}")
    return value


def parse_reference(content: str, source: str, default_label: str) -> Reference:
    """The curve in ``content`` (the text of a reference file called ``source`` in errors).

    Raises:
        ReportError: see :func:`load_reference`.
    """
    label = default_label
    header_seen = False
    rows: list[tuple[float, float, float, float]] = []
    for number, line in enumerate(content.splitlines(), start=1):
        where = f"--reference: {source} line {number}"
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if comment.lower().startswith("label:") and comment[6:].strip():
                label = comment[6:].strip()
            continue
        cells = [c.strip() for c in stripped.split(",")]
        if not header_seen:
            if tuple(c.lower() for c in cells) != HEADER:
                raise ReportError(f"{where}: expected the header {','.join(HEADER)}, got {stripped[:60]!r}")
            header_seen = True
            continue
        if len(cells) != len(HEADER):
            raise ReportError(f"{where}: expected {len(HEADER)} values ({','.join(HEADER)}), got {len(cells)}")
        step, mean, low, high = (_number(c, name, where) for c, name in zip(cells, HEADER, strict=True))
        if step < 0 or step != int(step):
            raise ReportError(f"{where}: step must be a whole number of env steps (0 or more), got {cells[0]!r}")
        if rows and step <= rows[-1][0]:
            raise ReportError(f"{where}: steps must increase, got {cells[0]} after {rows[-1][0]:g}")
        if low > high:
            raise ReportError(f"{where}: low {cells[2]} is above high {cells[3]}")
        rows.append((step, mean, low, high))
    if not header_seen:
        raise ReportError(f"--reference: {source}: no header row {','.join(HEADER)}")
    if not rows:
        raise ReportError(f"--reference: {source}: no rows after the header")
    table = np.array(rows, dtype=float)  # (N, 4)
    return Reference(label=label, source=source, steps=table[:, 0], mean=table[:, 1], low=table[:, 2],
                     high=table[:, 3])


def reference_point(reference: Reference, step: float, seed_values: np.ndarray) -> ReferencePoint:
    """``reference`` at ``step`` beside ``seed_values`` (R',) (a group's returns at that step)."""
    n_seeds = int(seed_values.size)
    value = reference.at(step)
    if value is None:
        return ReferencePoint(None, None, None, None, n_seeds)
    mean, low, high = value
    inside = int(np.count_nonzero((seed_values >= low) & (seed_values <= high)))
    return ReferencePoint(mean, low, high, inside, n_seeds)
