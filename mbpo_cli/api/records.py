"""Runs and their metrics as Python reads them from the registry: `Run` handles, metrics as plain lists and dicts,
and the same as a pandas DataFrame where pandas is installed (the `pandas` extra)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from mbpo_cli.api.progress import say
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.runs.layout import registry_file, run_dir
from mbpo_cli.runs.process import live_status
from mbpo_cli.runs.python_envs import EnvObject
from mbpo_cli.runs.registry import URL_ENV_VAR, Registry, RegistryError, RunInfo, RunStatus
from mbpo_cli.runs.session import Outcome

if TYPE_CHECKING:
    import pandas

    from mbpo_cli.api.policy import Policy

PathArg: TypeAlias = str | os.PathLike[str]
"""A runs directory or run folder, as a string or a path."""
Keys: TypeAlias = str | Sequence[str] | None
"""Metric keys to read: one key, several, or None for every key the run logged."""
MetricRow: TypeAlias = dict[str, float]
"""One env step's metrics: ``{"step": 300, "eval_return": 812.3, ...}`` (the step an int, the values floats)."""
PANDAS_MISSING = ("metrics_frame needs pandas (pip install 'mbpo-cli[pandas]'); metrics() gives the same rows as a "
                  "list of dicts")


def has_registry(runs_dir: Path) -> bool:
    """Whether there is a registry for `runs_dir`: $MBPO_REGISTRY_URL is set, or its SQLite file exists."""
    return bool(os.environ.get(URL_ENV_VAR)) or registry_file(runs_dir).is_file()


@contextmanager
def opened_registry(runs_dir: Path, *, read_only: bool = False, missing: str = "") -> Iterator[Registry]:
    """The registry of `runs_dir` ($MBPO_REGISTRY_URL when set), closed after the block; a RegistryError that
    begins with `missing` when there is none yet (nothing is created). Its warning goes to stderr."""
    if not has_registry(runs_dir):
        raise RegistryError(f"{missing}there is no registry at {registry_file(runs_dir)}")
    with Registry.open(runs_dir, read_only=read_only) as registry:
        if registry.warning is not None:
            say(f"warning: {registry.warning}")
        yield registry


@dataclass(frozen=True)
class Run:
    """A run as the registry held it when this handle was made (`runs()` gives newer handles).

    `status` is what the run is: a run recorded as running whose process is gone is interrupted.
    """

    id: str
    name: str
    status: RunStatus
    env_id: str
    """The task's gymnasium id (``python-factory/...`` or ``python-instance/...`` for an environment object)."""
    algo: str
    """mbpo, mbpo-<agent>, dhmbpo, or the agent alone (model-free)."""
    seed: int
    group: str | None
    env_steps: int
    """Env steps trained (of the last checkpoint, for a run that stopped mid-step)."""
    target_steps: int
    last_eval_return: float | None
    """The return of the run's last evaluation (None before its first)."""
    best_eval_return: float | None
    """The best evaluation return of the run so far (its policy is checkpoint ``best``)."""
    error: str | None
    """Why a failed run failed."""
    run_dir: Path
    """The run's folder: its config, command and checkpoints."""
    runs_dir: Path

    @property
    def final_eval_return(self) -> float | None:
        """The last evaluation's return of a finished run; None for a run that did not finish."""
        return self.last_eval_return if self.status is RunStatus.FINISHED else None

    def metrics(self, keys: Keys = None) -> list[MetricRow]:
        """The run's metrics: see :func:`metrics`."""
        return metrics(self.id, self.runs_dir, keys)

    def metrics_frame(self, keys: Keys = None) -> pandas.DataFrame:
        """The run's metrics as a DataFrame: see :func:`metrics_frame`."""
        return metrics_frame(self.id, self.runs_dir, keys)

    def load_policy(self, checkpoint: str | int = "latest", env: EnvObject | None = None) -> Policy:
        """The run's policy: see :func:`mbpo_cli.api.policy.load_policy`."""
        from mbpo_cli.api.policy import load_policy

        return load_policy(self.id, self.runs_dir, checkpoint, env=env)


def _handle(info: RunInfo, status: RunStatus, last: float | None, best: float | None, runs_dir: Path) -> Run:
    return Run(id=info.id, name=info.name, status=status, env_id=info.env_id, algo=info.algo, seed=info.seed,
               group=info.group, env_steps=info.env_steps, target_steps=info.target_steps, last_eval_return=last,
               best_eval_return=best, error=info.error, run_dir=run_dir(runs_dir, info.id), runs_dir=runs_dir)


def run_of_outcome(outcome: Outcome, runs_dir: Path) -> Run:
    """The handle of a run that this process just trained."""
    return _handle(outcome.run, outcome.status, outcome.last_metrics.get(metric_keys.EVAL_RETURN), outcome.best_eval,
                   runs_dir)


def run_of_record(registry: Registry, info: RunInfo, runs_dir: Path) -> Run:
    """The handle of a run as the registry records it."""
    returns = [value for _, _, value in registry.metrics(info.id, metric_keys.EVAL_RETURN)]
    status = live_status(info, run_dir(runs_dir, info.id)).status
    return _handle(info, status, returns[-1] if returns else None, max(returns) if returns else None, runs_dir)


def runs(runs_dir: PathArg = "runs", group: str | None = None) -> list[Run]:
    """The runs of the registry of `runs_dir` (``$MBPO_REGISTRY_URL`` when set), newest first; those of `group`
    alone when given. No registry yet: no runs."""
    folder = Path(runs_dir)
    if not has_registry(folder):
        return []
    with opened_registry(folder, read_only=True) as registry:
        return [run_of_record(registry, info, folder) for info in registry.list_runs(group=group)]


def _chosen(keys: Keys, known: list[str]) -> list[str]:
    """The keys asked for, each one the run logged (else a ValueError naming the closest it has)."""
    if keys is None:
        return known
    chosen = [keys] if isinstance(keys, str) else list(keys)
    unknown = [key for key in chosen if key not in known]
    if not chosen or unknown:
        close = dict.fromkeys(m for key in unknown for m in difflib.get_close_matches(key, known, n=3))
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"keys=: {', '.join(unknown) or 'no key given'}: not logged by the run ({len(known)} keys, "
                         f"all of them: metrics(run)){hint}")
    return chosen


def _rows(run: str, runs_dir: PathArg, keys: Keys) -> tuple[list[MetricRow], list[str]]:
    """The metric rows of `run` and the keys they hold, in order."""
    with opened_registry(Path(runs_dir), read_only=True, missing=f"no run {run!r}: ") as registry:
        info = registry.get_run(run)
        chosen = _chosen(keys, registry.metric_keys(info.id))
        wanted = set(chosen)
        by_step: dict[int, MetricRow] = {}
        for step, key, value in registry.metrics(info.id):
            if key in wanted:
                by_step.setdefault(step, {"step": step})[key] = value
    return list(by_step.values()), chosen


def metrics(run: str, runs_dir: PathArg = "runs", keys: Keys = None) -> list[MetricRow]:
    """A run's logged metrics (run id, id prefix or name) as a list of dicts, one per env step at which it logged
    any of `keys`, oldest first: ``[{"step": 100, "eval_return": 12.5, "alpha": 0.91, ...}, ...]``.

    A step holds the keys logged at it (evaluations and losses each epoch, rollout statistics at each rollout);
    `keys` (one key or several) keeps those alone, each one the run logged (a ValueError otherwise). The keys are the
    registry's (`mbpo runs metrics RUN` lists them; `mbpo_cli.config.metrics` describes each).
    """
    return _rows(run, runs_dir, keys)[0]


def metrics_frame(run: str, runs_dir: PathArg = "runs", keys: Keys = None) -> pandas.DataFrame:
    """:func:`metrics` as a pandas DataFrame: a ``step`` column, then a column per key (NaN at steps that did not
    log it). An ImportError when pandas is not installed (the `pandas` extra)."""
    try:
        import pandas
    except ImportError:
        raise ImportError(PANDAS_MISSING) from None
    rows, chosen = _rows(run, runs_dir, keys)
    columns: list[Any] = ["step", *chosen]
    return pandas.DataFrame(rows, columns=columns)
