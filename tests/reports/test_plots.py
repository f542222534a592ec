"""Tests for mbpo_cli.reports.plots: the curves a figure draws, image files and the terminal plot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from plothelpers import drawn_figures

from mbpo_cli.reports import plots

if TYPE_CHECKING:
    pass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _groups() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two groups on a 21-point grid: 'mbpo' with 3 runs (last one shorter), 'sac' with 1 run."""
    grid = np.linspace(0.0, 10_000.0, 21)  # (G,)
    mbpo = np.stack([grid / 100.0 + offset for offset in (0.0, 5.0, 10.0)])  # (3, G)
    mbpo[2, -3:] = np.nan
    sac = (grid / 200.0)[None, :]  # (1, G)
    return {"mbpo": (grid, mbpo), "sac": (grid, sac)}


def test_plot_curves_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "curves.png"
    plots.plot_curves(_groups(), path, threshold=50.0, title="Hopper-v4")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000



def test_plot_curves_draws_each_groups_iqm_its_band_and_the_threshold(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    figures = drawn_figures(monkeypatch)
    groups = _groups()
    model = {"mbpo": (groups["mbpo"][0], groups["mbpo"][1] * 2)}
    plots.plot_curves(groups, tmp_path / "curves.png", threshold=50.0, title="Hopper-v4", model_returns=model)
    (ax,) = figures[0].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["mbpo (n=3)", "mbpo: return inside its model", "sac (n=1)", "threshold 50"]
    grid = groups["mbpo"][0]
    # mbpo: only the 18 columns where all three runs have data; the IQM of 3 runs is their mean (offset 5)
    assert np.array_equal(lines["mbpo (n=3)"].get_xdata(), grid[:18])
    assert np.allclose(lines["mbpo (n=3)"].get_ydata(), grid[:18] / 100.0 + 5.0)
    assert np.allclose(lines["mbpo: return inside its model"].get_ydata(), 2 * (grid[:18] / 100.0 + 5.0))
    assert lines["mbpo: return inside its model"].get_linestyle() == "--"
    assert lines["mbpo: return inside its model"].get_color() == lines["mbpo (n=3)"].get_color()
    assert np.array_equal(lines["sac (n=1)"].get_xdata(), grid)
    assert np.allclose(lines["sac (n=1)"].get_ydata(), grid / 200.0)
    assert np.allclose(lines["threshold 50"].get_ydata(), 50.0)
    # one band: the mbpo runs' bootstrap interval (a single sac run has none), around its IQM
    (band,) = ax.collections
    x, y = band.get_paths()[0].vertices.T
    assert x.min() == 0.0 and x.max() == grid[17]
    assert y.min() <= 0.0 + 5.0 and y.max() >= grid[17] / 100.0 + 5.0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)
    assert ax.get_title() == "Hopper-v4"


def test_plot_curves_writes_svg_with_its_legend(tmp_path: Path) -> None:
    path = tmp_path / "curves.svg"
    plots.plot_curves(_groups(), path, threshold=None, title="Hopper-v4")
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    # matplotlib writes each text it draws as a comment before its glyphs
    for label in ("mbpo (n=3)", "sac (n=1)", "Hopper-v4", "eval return"):
        assert f"<!-- {label} -->" in text
    assert "threshold" not in text
    assert len(re.findall(r'<g id="\w*PolyCollection_\d+"', text)) == 1  # the one band


def test_plot_curves_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"plot file must end in \.png or \.svg"):
        plots.plot_curves(_groups(), tmp_path / "curves.pdf", threshold=None, title="x")


def test_text_plot_layout_and_legend() -> None:
    out = plots.text_plot(_groups(), width=40, height=8)
    lines = out.split("\n")
    assert len(lines) == 8 + 3
    assert "* mbpo" in lines[-1] and "o sac" in lines[-1]
    assert lines[-2].strip().startswith("0") and lines[-2].rstrip().endswith("10000")
    # y labels are the extreme IQM values: 'mbpo' ends at 8500 (last complete column), IQM 90.
    assert lines[0].split("|")[0].strip() == "90"
    assert lines[7].split("|")[0].strip() == "0"
    plot_area = [line.split("|", 1)[1] for line in lines[:8]]
    assert all(len(row) == 40 for row in plot_area)
    assert any("*" in row for row in plot_area) and any("o" in row for row in plot_area)


def test_text_plot_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no groups"):
        plots.text_plot({})
