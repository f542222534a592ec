"""A run's model diagnostics as recorded in the registry: tables, JSON and a three-panel figure (`mbpo diagnose`).

The engine records them at each epoch end (`mbpo_cli.engine.diagnostics`); adaptive rollouts add their realized
branch lengths at each retrain. Nothing here trains or evaluates: it reads metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.runs.registry import Registry, RunInfo

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap

EPOCH_KEYS = (metric_keys.EVAL_RETURN, metric_keys.DIAG_MODEL_RETURN, metric_keys.DIAG_MODEL_ERROR,
              metric_keys.DIAG_REWARD_ERROR, metric_keys.DIAG_DISAGREEMENT)
ROLLOUT_KEYS = (metric_keys.ROLLOUT_LENGTH_MEAN, metric_keys.ROLLOUT_LENGTH_P10, metric_keys.ROLLOUT_LENGTH_P90,
                metric_keys.ROLLOUT_THRESHOLD, metric_keys.ROLLOUT_STOPPED_UNCERTAIN)


@dataclass
class Diagnostics:
    """One run's diagnostics, by env step."""

    run: RunInfo
    epochs: dict[int, dict[str, float]] = field(default_factory=dict)
    """Env step -> the epoch's `EPOCH_KEYS` values (only epochs with a model diagnostic)."""
    open_loop: dict[int, list[float]] = field(default_factory=dict)
    """Env step -> open-loop error at h = 1..H (normalized MSE of the next observation)."""
    rollouts: dict[int, dict[str, float]] = field(default_factory=dict)
    """Env step of a retrain -> its adaptive rollout's `ROLLOUT_KEYS` (empty without `rollout.adaptive`)."""

    @property
    def horizon(self) -> int:
        """H of the open-loop curves (0 when none was recorded)."""
        return max((len(v) for v in self.open_loop.values()), default=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json` (no NaN: a missing value is null)."""
        return {
            "run": self.run.id,
            "name": self.run.name,
            "env_id": self.run.env_id,
            "epochs": [{"step": step, **{k: _clean(v) for k, v in values.items()},
                        "open_loop": [_clean(v) for v in self.open_loop.get(step, [])]}
                       for step, values in sorted(self.epochs.items())],
            "rollouts": [{"step": step, **{k: _clean(v) for k, v in values.items()}}
                         for step, values in sorted(self.rollouts.items())],
        }


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


def load_diagnostics(registry: Registry, run: RunInfo) -> Diagnostics:
    """Read a run's diagnostics from the registry (empty when it recorded none: a model-free run, or diagnostics
    off, or no epoch after exploration yet)."""
    diag = Diagnostics(run)
    by_step: dict[int, dict[str, float]] = {}
    open_loop: dict[int, dict[int, float]] = {}
    for step, key, value in registry.metrics(run.id):
        if key.startswith(metric_keys.DIAG_OPEN_LOOP_PREFIX):
            open_loop.setdefault(step, {})[int(key[len(metric_keys.DIAG_OPEN_LOOP_PREFIX):])] = value
        elif key in ROLLOUT_KEYS:
            diag.rollouts.setdefault(step, {})[key] = value
        elif key in EPOCH_KEYS:
            by_step.setdefault(step, {})[key] = value
    diag.open_loop = {step: [errors[h] for h in sorted(errors)] for step, errors in sorted(open_loop.items())}
    diag.epochs = {step: values for step, values in sorted(by_step.items())
                   if any(k.startswith("diag_") for k in values)}
    return diag


def shown_steps(steps: list[int], most: int) -> list[int]:
    """At most `most` of `steps`, evenly spread, the first and the last always included."""
    if len(steps) <= most:
        return steps
    picks = {round(i * (len(steps) - 1) / (most - 1)) for i in range(most)}
    return [steps[i] for i in sorted(picks)]


def _horizon_panel(ax: Axes, diag: Diagnostics, curves: int, colors: Colormap) -> None:
    """Open-loop error against rollout step for up to `curves` epochs (log scale, later epochs darker)."""
    steps = shown_steps(sorted(diag.open_loop), curves)
    for i, step in enumerate(steps):
        errors = diag.open_loop[step]
        ax.plot(range(1, len(errors) + 1), errors, marker="o", markersize=3,
                color=colors(0.85 * i / max(len(steps) - 1, 1)), label=f"step {step:,}")
    ax.set_yscale("log")
    ax.set_xlabel("rollout step h (real actions replayed, model's own states fed back)")
    ax.set_ylabel("next-observation error (normalized MSE)")
    ax.set_title("Compounding model error")
    if steps:
        ax.legend(fontsize=8)


def _epoch_points(diag: Diagnostics, key: str) -> list[tuple[int, float]]:
    """``(env step, value)`` of `key` at every epoch that recorded it."""
    return [(s, diag.epochs[s][key]) for s in sorted(diag.epochs) if key in diag.epochs[s]]


def _return_panel(ax: Axes, diag: Diagnostics) -> None:
    """The model return beside the real evaluation return over training."""
    for key, label, style in ((metric_keys.EVAL_RETURN, "real (evaluation)", "-"),
                              (metric_keys.DIAG_MODEL_RETURN, "inside the model", "--")):
        points = _epoch_points(diag, key)
        if points:
            ax.plot(*zip(*points, strict=True), style, marker="o", markersize=3, label=label)
    ax.set_xlabel("env steps (random exploration included)")
    ax.set_ylabel("return of the deterministic policy")
    ax.set_title("Model return vs real return")
    ax.legend(fontsize=8)


def _error_panel(ax: Axes, diag: Diagnostics) -> None:
    """The one-step error on unseen real transitions with the members' disagreement, and, for adaptive rollouts,
    the realized branch length on a second axis."""
    for key, label in ((metric_keys.DIAG_MODEL_ERROR, "one-step error, unseen real data"),
                       (metric_keys.DIAG_DISAGREEMENT, "members' disagreement")):
        points = _epoch_points(diag, key)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("env steps")
    ax.set_title("Model error and disagreement")
    if diag.rollouts:
        lengths_ax = ax.twinx()
        retrains = sorted(diag.rollouts)
        mean = [diag.rollouts[s].get(metric_keys.ROLLOUT_LENGTH_MEAN, math.nan) for s in retrains]
        low = [diag.rollouts[s].get(metric_keys.ROLLOUT_LENGTH_P10, math.nan) for s in retrains]
        high = [diag.rollouts[s].get(metric_keys.ROLLOUT_LENGTH_P90, math.nan) for s in retrains]
        lengths_ax.plot(retrains, mean, color="gray", linewidth=1, label="branch length (mean, p10-p90)")
        lengths_ax.fill_between(retrains, low, high, color="gray", alpha=0.2, linewidth=0)
        lengths_ax.set_ylabel("adaptive branch length")
        lengths_ax.legend(fontsize=8, loc="lower right")
    ax.legend(fontsize=8, loc="upper right")


def plot_diagnostics(diag: Diagnostics, path: Path, curves: int = 6) -> None:
    """Save a figure (PNG or SVG by `path`'s suffix) with three panels: open-loop error against rollout step for up
    to `curves` epochs (log scale, later epochs darker), the model return beside the real evaluation return over
    training, and the one-step error on unseen real transitions with the members' disagreement (and, for adaptive
    rollouts, the realized branch length)."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError("plot file must end in .png or .svg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (horizon_ax, return_ax, error_ax) = plt.subplots(1, 3, figsize=(16, 4.8))
    try:
        _horizon_panel(horizon_ax, diag, curves, plt.get_cmap("viridis"))
        _return_panel(return_ax, diag)
        _error_panel(error_ax, diag)
        fig.suptitle(f"{diag.run.env_id}, run {diag.run.id} ({diag.run.name})")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=suffix[1:], dpi=110)
    finally:
        plt.close(fig)
