"""Learning-curve plots: an image file (matplotlib, Agg backend) and a plain-text terminal plot.

Both take ``groups``: a mapping from group name to ``(grid (G,), returns (R, G))``, i.e. R runs
interpolated onto a common env-step grid (see :func:`mbpo_cli.stats.curves_on_grid`), NaN where a run
has no data. Only grid columns where every run of the group has data are drawn, so the aggregate
never mixes different sets of seeds and never extends past the shortest run. A published curve
(:mod:`mbpo_cli.reports.reference`) is drawn over the same steps as the groups: its mean dashed, its range a light
band.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mbpo_cli.reports import stats
from mbpo_cli.reports.reference import Reference

Groups = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Group name -> ``(grid (G,), returns (R, G))``."""

STEPS_LABEL = "env steps (random exploration included)"
"""The x label of a plot over env steps."""

_SYMBOLS = "*o+x#@%&$~"


def _complete_columns(name: str, grid: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one group and keep the grid columns where all runs have data.

    Args:
        name: group name (for error messages).
        grid: (G,) env steps.
        returns: (R, G) eval returns, NaN where a run has no data.

    Returns:
        ``(steps (K,), values (R, K))`` with K <= G complete columns.
    """
    g = np.asarray(grid, dtype=float)
    r = np.asarray(returns, dtype=float)
    if g.ndim != 1 or r.ndim != 2 or r.shape[1] != g.size or r.shape[0] == 0:
        raise ValueError(
            f"group {name!r}: expected grid (G,) and returns (R>=1, G), got {g.shape} and {r.shape}"
        )
    keep = np.all(np.isfinite(r), axis=0)
    return g[keep], r[:, keep]


def plot_curves(groups: Groups, path: Path, threshold: float | None, title: str,
                model_returns: Groups | None = None, x_label: str = STEPS_LABEL,
                reference: Reference | None = None) -> None:
    """Plot each group's IQM learning curve with a 95% bootstrap band and save it as PNG or SVG.

    The band is a percentile bootstrap over runs at every grid column (:func:`stats.bootstrap_ci`)
    and is omitted for a group with a single run. Parent folders of ``path`` are created.

    Args:
        groups: name -> ``(grid (G,), returns (R, G))``.
        path: output file; its suffix (``.png`` or ``.svg``) picks the format.
        threshold: eval return drawn as a dashed horizontal line, or None for no line.
        title: figure title.
        model_returns: name -> ``(grid (G,), returns (R, G))`` of the groups' returns inside their models, drawn
            dashed in their group's colour (IQM, no band), or None.
        x_label: what the grids hold (env steps by default; the caller scales a time axis to its unit).
        reference: a published curve over env steps, drawn up to the groups' last step (:func:`_reference_span`):
            its mean a black dashed line labelled with its name, its [low, high] a light grey band.

    Raises:
        ValueError: on an unknown suffix, no groups, or malformed arrays.
    """
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError("plot file must end in .png or .svg")
    if not groups:
        raise ValueError("no groups to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        for name, (grid, returns) in groups.items():
            steps, values = _complete_columns(name, grid, returns)
            n_runs = values.shape[0]
            (line,) = ax.plot(steps, stats.iqm(values, axis=0), label=f"{name} (n={n_runs})")
            if n_runs >= 2 and steps.size:
                band = np.array([stats.bootstrap_ci(column) for column in values.T])  # (K, 2)
                ax.fill_between(steps, band[:, 0], band[:, 1], color=line.get_color(), alpha=0.2, linewidth=0)
            if model_returns is not None and name in model_returns:
                model_steps, model_values = _complete_columns(name, *model_returns[name])
                ax.plot(model_steps, stats.iqm(model_values, axis=0), "--", color=line.get_color(),
                        label=f"{name}: return inside its model")
        if reference is not None:
            _draw_reference(ax, reference, max(float(np.max(grid)) for grid, _ in groups.values()))
        if threshold is not None:
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xlabel(x_label)
        ax.set_ylabel("eval return")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=suffix[1:], dpi=120)
    finally:
        plt.close(fig)


def _reference_span(reference: Reference, last: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, mean, low, high)`` of the reference up to env step ``last`` (its value at ``last`` interpolated;
    nothing past its own last step)."""
    keep = reference.steps <= last
    steps, mean, low, high = reference.steps[keep], reference.mean[keep], reference.low[keep], reference.high[keep]
    end = reference.at(last)
    if end is not None and (steps.size == 0 or steps[-1] < last):
        steps = np.append(steps, last)
        mean, low, high = np.append(mean, end[0]), np.append(low, end[1]), np.append(high, end[2])
    return steps, mean, low, high


def _draw_reference(ax: Any, reference: Reference, last: float) -> None:
    """The reference's mean (dashed, black) and its range (light grey band) up to env step ``last``."""
    steps, mean, low, high = _reference_span(reference, last)
    if steps.size == 0:
        return
    ax.fill_between(steps, low, high, color="gray", alpha=0.15, linewidth=0, label=f"{reference.label}: range")
    ax.plot(steps, mean, "--", color="black", linewidth=1.2, label=f"{reference.label}: mean")


def text_plot(groups: Groups, width: int = 60, height: int = 12) -> str:
    """Render the groups' IQM curves as a compact terminal plot.

    Each group is drawn with one symbol from ``*o+x#@%&$~`` (later groups overwrite earlier ones
    where they share a cell). Layout, ``height + 3`` lines::

        <y max> |   ...plot area: height rows x width columns...
                |
        <y min> |
                +------------------------------------------------------------
                 <first step>                                    <last step>
        * name1  o name2

    Args:
        groups: name -> ``(grid (G,), returns (R, G))``.
        width: plot-area columns (>= 2).
        height: plot-area rows (>= 2).

    Returns:
        The plot, lines joined by newlines (no trailing newline). If no group has a complete grid
        column, a single line saying so.

    Raises:
        ValueError: with no groups, more groups than symbols, a too-small size or malformed arrays.
    """
    if not groups:
        raise ValueError("no groups to plot")
    if len(groups) > len(_SYMBOLS):
        raise ValueError(f"text_plot draws at most {len(_SYMBOLS)} groups, got {len(groups)}")
    if width < 2 or height < 2:
        raise ValueError(f"width and height must be >= 2, got {width}x{height}")
    curves = _iqm_curves(groups)
    if not curves:
        return "(no grid step where every run has data)"
    x_min = min(s[0] for s, _ in curves.values())
    x_max = max(s[-1] for s, _ in curves.values())
    y_min = min(float(np.min(v)) for _, v in curves.values())
    y_max = max(float(np.max(v)) for _, v in curves.values())
    xs = np.linspace(x_min, x_max, width)  # (width,) env step of each column
    canvas = _canvas(groups, curves, xs, y_min, y_max, height)
    top, bottom = f"{y_max:.4g}", f"{y_min:.4g}"
    label_width = max(len(top), len(bottom))
    lines = []
    for i, cells in enumerate(canvas):
        label = top if i == 0 else bottom if i == height - 1 else ""
        lines.append(f"{label:>{label_width}} |{''.join(cells)}")
    lines.append(" " * label_width + " +" + "-" * width)
    first, last = f"{x_min:.0f}", f"{x_max:.0f}"
    lines.append(" " * (label_width + 2) + first + last.rjust(max(width - len(first), len(last) + 1)))
    lines.append("  ".join(f"{symbol} {name}" for symbol, name in zip(_SYMBOLS, groups, strict=False)))
    return "\n".join(lines)


def _iqm_curves(groups: Groups) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> ``(steps (K,), IQM (K,))`` over the complete grid columns, for the groups that have any."""
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (grid, returns) in groups.items():
        steps, values = _complete_columns(name, grid, returns)
        if steps.size:
            curves[name] = (steps, np.asarray(stats.iqm(values, axis=0)))
    return curves


def _canvas(groups: Groups, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], xs: np.ndarray, y_min: float,
            y_max: float, height: int) -> list[list[str]]:
    """``height`` rows of ``xs.size`` cells, each group's symbol where its curve passes (later groups on top)."""
    y_span = (y_max - y_min) or 1.0
    canvas = [[" "] * xs.size for _ in range(height)]
    for symbol, name in zip(_SYMBOLS, groups, strict=False):
        if name not in curves:
            continue
        steps, curve = curves[name]
        for col in np.flatnonzero((xs >= steps[0]) & (xs <= steps[-1])):
            y = float(np.interp(xs[col], steps, curve))
            row = round((y - y_min) / y_span * (height - 1))
            canvas[height - 1 - row][col] = symbol
    return canvas
