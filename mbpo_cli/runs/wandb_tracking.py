"""Weights & Biases tracking: the live W&B run that a training session keeps with `train.track` (`--track`).

The W&B run mirrors the registry's run. Its id derives from the run id (:func:`wandb_run_id`), so every session of
a run, a resumed one included, logs to the same W&B run (`resume="allow"`); its name is the run name, its group the
registry group (a seed group, an ablation), its job type the ablation variant, its tags the preset, task, algorithm
and seed (:func:`run_tags`), its config the run's config. Each epoch's metrics are logged under their TensorBoard
tags (`eval/eval_return`, `model/model_holdout_loss`, see `mbpo_cli.config.metrics`), so W&B groups its panels by
section, against the env step (`env_step`, every metric's x axis).

Where the run goes is wandb's own business, read from its environment variables: WANDB_PROJECT (default
:data:`DEFAULT_PROJECT`), WANDB_ENTITY, WANDB_MODE (`offline` keeps the run on disk for a later `wandb sync`),
WANDB_DIR (default: the run folder, `runs/<run-id>/wandb/`), WANDB_API_KEY or `wandb login`. wandb's own console
output is off: the session says where the W&B run is in one line of its own.

wandb is an optional extra (`pip install 'mbpo-cli[wandb]'`). Without it, asking for tracking is a one-line error
(:class:`WandbMissing`, exit 2) before anything runs. Tracking must never stop training: a W&B run that cannot start
(no login, no network) or stops accepting metrics is reported in one line and ends tracking for the session; the
registry still holds every metric.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import timezone
from pathlib import Path
from typing import Any

from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.metrics import tensorboard_tag
from mbpo_cli.runs.registry import RunInfo

INSTALL_HINT = "pip install 'mbpo-cli[wandb]'"
DEFAULT_PROJECT = "mbpo"
"""The W&B project of runs logged without WANDB_PROJECT set."""
STEP_METRIC = "env_step"
"""The logged key every metric is plotted against: the run's real env steps."""
MAX_TAG = 64
"""W&B refuses longer tags."""
MAX_REASON = 200
"""How much of a wandb error message the one-line warning keeps."""


class WandbMissing(ConfigError):
    """Tracking was asked for but the `wandb` package is not installed (one line; the CLI exits 2)."""


def wandb_module(what: str) -> Any:
    """The `wandb` module, or WandbMissing naming `what` asked for it (e.g. `train.track`)."""
    try:
        import wandb
    except ImportError:
        raise WandbMissing(f"{what} needs the wandb package: {INSTALL_HINT}") from None
    return wandb


def wandb_run_id(run: RunInfo) -> str:
    """The W&B run id of registry run `run`: its id and creation time (UTC, to the second), e.g.
    `3f9a1c2e-20261207T192401`. The same for every session of the run (and in a copied runs directory); unlike the
    8-hex-digit run id alone, not shared by two registries' runs that log to one W&B project."""
    return f"{run.id}-{run.created_at.astimezone(timezone.utc):%Y%m%dT%H%M%S}"


def run_tags(run: RunInfo) -> list[str]:
    """The W&B tags of `run`: its preset (when it has one), task, algorithm and `seed-<n>`."""
    tags = [run.preset, run.env_id, run.algo, f"seed-{run.seed}"]
    return [tag[:MAX_TAG] for tag in tags if tag]


class LiveWandb:
    """A training session's W&B run: started with the session, one row of metrics per epoch, finished at its end."""

    def __init__(self, run: RunInfo, config: Mapping[str, Any], folder: Path, message: Callable[[str], None]) -> None:
        """Start (or, for a resumed run, continue) the W&B run of registry run `run`, with the session's `config`;
        `folder` is the run folder, `message` takes the session's one-line notes and warnings."""
        wandb = wandb_module("train.track")
        self.message = message
        self.run: Any = None
        try:
            self.run = wandb.init(
                id=wandb_run_id(run), resume="allow", name=run.name, group=run.group, job_type=run.variant,
                tags=run_tags(run), config=dict(config),
                project=None if os.environ.get("WANDB_PROJECT") else DEFAULT_PROJECT,
                dir=None if os.environ.get("WANDB_DIR") else str(folder),
                reinit="create_new",  # a run of its own, whatever W&B run the calling process has open
                settings=wandb.Settings(console="off", silent=True),
            )
            self.run.define_metric(STEP_METRIC)
            self.run.define_metric("*", step_metric=STEP_METRIC)
        except Exception as err:  # wandb fails in many types (no login, a network timeout, a rejected setting)
            self._fail(err, "cannot start", "this session trains without it")
            return
        self.message(self._where())

    def _where(self) -> str:
        """The one line that says where the W&B run is."""
        if self.run.disabled:
            return "W&B: disabled (WANDB_MODE=disabled), nothing is logged to W&B"
        if self.run.offline:
            folder = Path(self.run.dir).parent
            return f"W&B: offline run {self.run.id} (upload it with: wandb sync {folder})"
        return f"W&B: run {self.run.id} at {self.run.url}"

    def write(self, env_step: int, metrics: Mapping[str, float]) -> None:
        """One epoch's metrics at `env_step`, each under its section (NaN and infinite values left out, as the
        registry leaves them)."""
        if self.run is None:
            return
        row = {tensorboard_tag(key): float(value) for key, value in metrics.items() if math.isfinite(value)}
        try:
            self.run.log({STEP_METRIC: env_step, **row})
        except Exception as err:  # a W&B run that stops accepting metrics must not stop training
            self._fail(err, "stopped", "this session logs no more to W&B")

    def close(self, failed: bool = False) -> None:
        """Finish the W&B run, marked failed when the session failed (safe to call twice)."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish(exit_code=1 if failed else 0)
        except Exception as err:
            self._fail(err, "could not finish", "the W&B run may lack its last metrics")

    def _fail(self, err: Exception, what: str, then: str) -> None:
        """End tracking for the session, with one line saying `what` happened to it, why, and `then` what."""
        run, self.run = self.run, None
        if run is not None:
            with suppress(Exception):
                run.finish(exit_code=1)
        lines = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {lines[0][:MAX_REASON]}" if lines else type(err).__name__
        self.message(f"warning: W&B tracking {what} ({reason}); {then}, the registry keeps every metric")
