"""Tests for mbpo_cli.plots: image files and the terminal plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbpo_cli.reports import plots

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


def test_plot_curves_writes_svg(tmp_path: Path) -> None:
    path = tmp_path / "curves.svg"
    plots.plot_curves(_groups(), path, threshold=None, title="Hopper-v4")
    text = path.read_text()
    assert "<svg" in text


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
