"""The runs directory's layout: where the registry file, each run's folder and the files in it are, and how the
registry names a checkpoint file.

::

    RUNS_DIR/
        registry.db                  the default registry (SQLite; with its -wal, -shm and -journal companions)
        ablations/                   the ablations' configs and logs
        tunes/                       the tuning studies' trial configs and logs
        <run id>/                    one folder per run, named by its id
            config.yaml              the resolved config (resume compares it, `--force` accepts an edit)
            command.txt              the command that started the run
            lock                     held by the process training the run
            registry-pending.jsonl   registry writes kept through an outage
            tensorboard/             live event files (`train.tensorboard`)
            checkpoints/
                step-0000000300.pt   full checkpoints, by env step
                best-policy.pt       the best evaluation's policy

Nothing else in mbpo builds these names.
"""

from __future__ import annotations

import re
from pathlib import Path

REGISTRY_FILE = "registry.db"
"""The default registry's SQLite file, directly in the runs directory."""
ABLATIONS_FOLDER = "ablations"
"""The runs directory's folder of ablation configs and logs."""
TUNES_FOLDER = "tunes"
"""The runs directory's folder of tuning studies' trial configs and logs."""
RUN_ID = re.compile(r"[0-9a-f]{8}", re.IGNORECASE)
"""A run id (8 hex digits, as the registry makes them), and so the name of a run's folder in the runs directory;
ignoring case for file systems that do."""
CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"
LOCK_FILE = "lock"
PENDING_FILE = "registry-pending.jsonl"
PACK_FILE = "pack.json"
"""In each folder of a pack's runs: the ids of the pack's runs, in its seed order (`mbpo resume` of any one
continues them all)."""
"""The run folder's file of registry writes not recorded yet, one JSON object a line, oldest first."""
LIVE_FOLDER = "tensorboard"
"""The live event files' folder inside a run folder (`runs/<run-id>/tensorboard/`)."""
CHECKPOINTS_FOLDER = "checkpoints"
BEST_POLICY = "best-policy.pt"
"""The best evaluation's policy file in a run's checkpoints folder (replaced at each new best)."""


def registry_file(runs_dir: Path) -> Path:
    """The default registry's SQLite file of a runs directory."""
    return runs_dir / REGISTRY_FILE


def run_dir(runs_dir: Path, run_id: str) -> Path:
    """The folder of a run's artifacts."""
    return runs_dir / run_id


def checkpoints_dir(folder: Path) -> Path:
    """The checkpoints folder of the run folder `folder`."""
    return folder / CHECKPOINTS_FOLDER


def step_checkpoint(folder: Path, step: int) -> Path:
    """The full checkpoint file of the run folder `folder` at env step `step`."""
    return checkpoints_dir(folder) / f"step-{step:010d}.pt"


def best_policy(folder: Path) -> Path:
    """The best-evaluation policy file of the run folder `folder`."""
    return checkpoints_dir(folder) / BEST_POLICY


def stored_path(runs_dir: Path, path: Path) -> str:
    """How the registry records a checkpoint file: relative to the runs directory, so that a moved runs
    directory, or a relative `--runs-dir` used from another directory, still finds it."""
    return path.relative_to(runs_dir).as_posix()


def checkpoint_file(runs_dir: Path, stored: str) -> Path:
    """The file a registry row names: relative to the runs directory, or (rows of older versions, which stored
    paths as given) absolute or relative to the directory they ran in."""
    path = Path(stored)
    if path.is_absolute():
        return path
    inside = runs_dir / path
    return inside if inside.exists() or not path.exists() else path
