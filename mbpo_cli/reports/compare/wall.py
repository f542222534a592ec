"""The wall-clock table: what each group's runs cost in time, and their env steps per second."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mbpo_cli.reports.compare.groups import Group


@dataclass(frozen=True)
class WallRow:
    """Wall-clock cost of one group (means over its runs)."""

    group: str
    n_runs: int
    wall_seconds: float
    env_steps: float
    steps_per_second: float | None
    """The mean over the runs that recorded a wall time (None: none did)."""


def wall_row(group: Group) -> WallRow:
    """``group``'s means over its runs."""
    rates = [r.env_steps / r.wall_seconds for r in group.runs if r.wall_seconds > 0]
    return WallRow(group.name, len(group.runs), float(np.mean([r.wall_seconds for r in group.runs])),
                   float(np.mean([r.env_steps for r in group.runs])), float(np.mean(rates)) if rates else None)


def wall_rows(groups: Sequence[Group]) -> list[WallRow]:
    """Every group's row."""
    return [wall_row(group) for group in groups]
