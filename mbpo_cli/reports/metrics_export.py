"""`mbpo runs export`: recorded runs as TensorBoard event files or as one long-format CSV.

Both formats hold the same scalars (:func:`run_scalars`): every metric the run logged, at its env step, and every
`mbpo eval` evaluation of one of its checkpoints, at the checkpoint's env step, as `evaluation/mean_return` and
`evaluation/std_return` (deterministic) or `evaluation_stochastic/...` (`--stochastic`). The CSV names a metric by
its registry key (`eval_return`, `model_holdout_loss`, ...); TensorBoard tags it with its section,
`eval/eval_return`, `model/model_holdout_loss`, ... (`mbpo_cli.config.metrics.tensorboard_tag`).

Wall time (TensorBoard's "Relative" and "Wall" axes): the registry's reading API gives none per metric row, so a
metric's time is the run's creation time plus its training wall time at that step (the `wall_seconds` metric,
which counts training across sessions): the "Relative" axis is then training time, resumes' gaps left out. An
evaluation's time is when it was recorded.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.runs import outputs
from mbpo_cli.runs.registry import EvalInfo, Registry, RegistryError, RunInfo, sanitize_name
from mbpo_cli.runs.tensorboard import summary_writer

CSV_HEADER = ("run_id", "run_name", "step", "key", "value")
EVENT_FILE_PREFIX = "events.out.tfevents."
"""How TensorBoard event files are named; an export replaces the ones in each run's folder."""


@dataclass(frozen=True)
class Scalar:
    """One value of one run at one env step."""

    step: int
    key: str
    """The registry key (`eval_return`) or, for an evaluation, `evaluation/mean_return`, ..."""
    value: float
    wall_time: float
    """Seconds since the epoch."""
    tag: str
    """The TensorBoard tag: `<namespace>/<key>` for a metric (`eval/eval_return`), the key for an evaluation."""


def _checkpoint_step(evaluation: EvalInfo, fallback: int) -> int:
    """The env step of the checkpoint an evaluation evaluated (`fallback` when its label names none)."""
    label = evaluation.label
    return fallback if label is None else label.step


def run_scalars(registry: Registry, run: RunInfo) -> list[Scalar]:
    """Every metric row and every evaluation of `run`, ordered by env step, then key (see the module docstring)."""
    rows = registry.metrics(run.id)
    start = run.created_at.timestamp()
    trained = {step: value for step, key, value in rows if key == metric_keys.WALL_SECONDS}
    scalars = []
    last = 0.0
    for step, key, value in rows:
        last = trained.get(step, last)
        scalars.append(Scalar(step, key, value, start + last, metric_keys.tensorboard_tag(key)))
    for evaluation in registry.evaluations(run.id):
        step = _checkpoint_step(evaluation, run.env_steps)
        section = "evaluation" if evaluation.deterministic else "evaluation_stochastic"
        stamp = evaluation.created_at.timestamp()
        for name, value in (("mean_return", evaluation.mean), ("std_return", evaluation.std)):
            scalars.append(Scalar(step, f"{section}/{name}", value, stamp, f"{section}/{name}"))
    return sorted(scalars, key=lambda s: (s.step, s.key))


def folder_names(runs: Sequence[RunInfo]) -> dict[str, str]:
    """Run id -> its folder's name: the run name, made safe for a file system; a name that another run of the
    export already has (compared case-insensitively, for file systems that ignore case) gets `-<run id>` added."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for run in runs:
        try:
            name = sanitize_name(run.name)
        except RegistryError:
            name = run.id
        if name.lower() in taken:
            name = f"{name[:70]}-{run.id}"
        taken.add(name.lower())
        names[run.id] = name
    return names


def tensorboard_folders(runs: Sequence[RunInfo], out: Path, runs_dir: Path, overwrite: bool) -> dict[str, Path]:
    """Run id -> the folder of its event files, `out/<run name>/` with its symlinks resolved (`out` as the user
    named it, checked by :func:`mbpo_cli.runs.outputs.check_folder`); OutputError when one is something mbpo keeps
    (a link into a run's folder), not a folder, or holds event files and `overwrite` is not given."""
    folders: dict[str, Path] = {}
    for run_id, name in folder_names(runs).items():
        named = out / name
        folder = named.resolve()
        outputs.refuse_owned("--out", named, folder, runs_dir)
        if folder.exists() and not folder.is_dir():
            raise outputs.OutputError(f"--out {outputs.shown(out)}: {outputs.shown(named)} is not a folder")
        if not overwrite and folder.is_dir() and any(folder.glob(f"{EVENT_FILE_PREFIX}*")):
            raise outputs.OutputError(f"--out {outputs.shown(out)}: {outputs.shown(named)} already holds event files; "
                                      f"add {outputs.OVERWRITE_FLAG} to replace them")
        folders[run_id] = folder
    return folders


def write_tensorboard(registry: Registry, runs: Sequence[RunInfo], folders: dict[str, Path]) -> dict[str, int]:
    """One event file per run in its folder of `folders` (:func:`tensorboard_folders`), replacing the event files
    there; run id -> number of scalars. Each run's file is written in a temporary folder beside its own and moved in
    once complete: a failed export leaves the earlier event files as they were. TensorBoardMissing when the
    `tensorboard` package is not installed."""
    writer_class = summary_writer("--format tensorboard")
    written: dict[str, int] = {}
    for run in runs:
        folder = folders[run.id]
        scalars = run_scalars(registry, run)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with outputs.staging(folder) as partial:
            writer = writer_class(str(partial))
            try:
                for s in scalars:
                    writer.add_scalar(s.tag, s.value, s.step, walltime=s.wall_time)
            finally:
                writer.close()
            folder.mkdir(exist_ok=True)
            for old in folder.glob(f"{EVENT_FILE_PREFIX}*"):
                old.unlink()
            for new in partial.iterdir():
                os.replace(new, folder / new.name)
        written[run.id] = len(scalars)
    return written


def csv_rows(registry: Registry, runs: Iterable[RunInfo]) -> Iterable[tuple[str, str, int, str, float]]:
    """`(run_id, run_name, step, key, value)` for every scalar of every run (the CSV's rows, in order)."""
    for run in runs:
        for s in run_scalars(registry, run):
            yield run.id, run.name, s.step, s.key, s.value


def write_csv(registry: Registry, runs: Sequence[RunInfo], stream: TextIO) -> int:
    """The long-format CSV (header :data:`CSV_HEADER`) on `stream`; returns the number of rows. Values are
    written in full precision (they read back as the same floats)."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    count = 0
    for row in csv_rows(registry, runs):
        writer.writerow(row)
        count += 1
    return count
