"""Shared by the plot tests: the matplotlib figures a plotting function draws, caught as it closes them."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure


def drawn_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures drawn from now on, caught as they are closed (they are still closed)."""
    import matplotlib.pyplot as plt

    figures: list[Figure] = []
    close = plt.close

    def catch(fig: Figure) -> None:
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", catch)
    return figures
