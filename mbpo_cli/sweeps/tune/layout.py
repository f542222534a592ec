"""Where a study's things are: its folder under the runs directory (each trial's config file, the child logs, the
study's lock) and the registry name and variant of each trial's run."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from mbpo_cli.config.schema import Config
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import TUNES_FOLDER
from mbpo_cli.runs.registry import sanitize_name
from mbpo_cli.sweeps.tune.spec import StudySpec

TUNES_DIR = TUNES_FOLDER
"""Folder under the runs directory holding each study's trial configs, child logs and lock."""


def tune_dir(runs_dir: Path, study: str) -> Path:
    """Where a study's trial configs and child logs live."""
    return runs_dir / TUNES_DIR / study


def trial_file(runs_dir: Path, study: str, number: int) -> Path:
    """The config file of trial ``number`` (what its `mbpo train --config` reads)."""
    return tune_dir(runs_dir, study) / "configs" / f"trial-{number}.yaml"


def run_name(study: str, number: int) -> str:
    """The registry name of trial ``number``'s run."""
    return sanitize_name(f"{study}-t{number}")


def variant_name(number: int) -> str:
    """The registry variant of trial ``number``'s run."""
    return f"trial-{number}"


@contextmanager
def study_lock(runs_dir: Path, study: str) -> Iterator[None]:
    """Hold the study's lock file while its trials run; RunError when another live process holds it."""
    folder = tune_dir(runs_dir, study)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "lock", "a")  # noqa: SIM115 - held for the block
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunError(f"study {study} is being run by another live process") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def write_trial_config(spec: StudySpec, runs_dir: Path, number: int, config: Config) -> Path:
    """Write a trial's resolved config as YAML (``base: PRESET`` first when the study has one: it records the runs'
    preset); the file."""
    path = trial_file(runs_dir, spec.name, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ({"base": spec.preset} if spec.preset else {}) | config.to_dict()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
