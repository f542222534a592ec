"""The x axis of a learning-curve report (`mbpo compare --x`): env steps, or seconds of training wall time.

**Training wall time** (``--x wall``): each evaluation stands at the ``wall_seconds`` metric its epoch logged
(:data:`mbpo_cli.config.metrics.WALL_SECONDS`, recorded with every epoch's metrics since the first version): the
seconds the run had trained by the end of that epoch, summed over its sessions. That is everything a session did, as
the run was configured: evaluations, model diagnostics (``diagnostics.enabled``) and checkpoint saves included (the
``time_eval`` and ``time_diag`` metrics say how much of an epoch they took). A session counts from its start (once
the run is built or restored) and the next one starts from the total the registry holds for the run, so time between
sessions (a run stopped, or killed and waiting to be resumed) is not counted: a resumed run's curve does not jump by
the hours it sat interrupted. A killed run resumes from its last checkpoint with the wall time of its last
heartbeat, so the steps it redoes are counted again, as the time was spent. Wall time depends on the machine and on
what else ran on it: compare runs timed on the same machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum


def fmt_duration(seconds: float | None) -> str:
    """Seconds as `12.3 s`, `4m 05s` or `1h 02m`; `-` for none."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


TIME_UNITS = ((2 * 60.0, 1.0, "seconds"), (2 * 3600.0, 60.0, "minutes"), (float("inf"), 3600.0, "hours"))
"""(up to how many seconds, seconds per unit, unit): a plot's time axis in seconds up to 2 minutes, in minutes up to
2 hours, else in hours."""


def time_unit(longest: float) -> tuple[float, str]:
    """Seconds per unit and the unit's name for a time axis reaching ``longest`` seconds (:data:`TIME_UNITS`)."""
    return next((per, name) for upto, per, name in TIME_UNITS if longest <= upto)


class Axis(str, Enum):
    """Where a report places a run's evaluations: at their env steps, or at their training wall time (seconds)."""

    STEPS = "steps"
    WALL = "wall"

    def position(self, x: float) -> float:
        """A point of this axis as a report holds it: a whole env step (an int) or seconds."""
        return int(x) if self is Axis.STEPS else float(x)

    def fmt(self, x: float) -> str:
        """``2,500`` (env steps) or ``1m 40s`` (seconds)."""
        return f"{x:,.0f}" if self is Axis.STEPS else fmt_duration(x)

    def at(self, x: float) -> str:
        """``env step 2,500`` or ``training time 1m 40s``."""
        return f"{self.point_name} {self.fmt(x)}"

    def points(self, xs: Sequence[float]) -> str:
        """``env step 1,000, 2,000`` or ``training time 20.0 s, 40.0 s``."""
        return f"{self.point_name} {', '.join(self.fmt(x) for x in xs)}"

    def span(self, first: float, last: float) -> str:
        """``env steps 1,000-5,000`` or ``training time 20.0 s-1m 40s``."""
        return f"{'env steps' if self is Axis.STEPS else 'training time'} {self.fmt(first)}-{self.fmt(last)}"

    @property
    def point_name(self) -> str:
        """What one point of the axis is: ``env step`` or ``training time``."""
        return "env step" if self is Axis.STEPS else "training time"

    @property
    def range_name(self) -> str:
        """``env-step`` or ``training-time`` (as in "an env-step range")."""
        return "env-step" if self is Axis.STEPS else "training-time"

    @property
    def end_name(self) -> str:
        """A group's last point: ``final step`` or ``final time``."""
        return "final step" if self is Axis.STEPS else "final time"
