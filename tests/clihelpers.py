"""Shared helpers for the in-process CLI tests."""

import json
import os
from pathlib import Path

import torch
from typer.testing import CliRunner, Result

from mbpo_cli.cli.app import app

runner = CliRunner()

TINY_SETS = [
    "train.init_steps=200", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
    "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32", "rollout.batch_size=500",
    "model.max_epochs=5", "model.hidden=32", "model.batch_size=32",
]
"""A training run of seconds: small networks and batches, one thread, 200 exploration steps."""
TINY = ["--preset", "inverted_pendulum", "--steps", "300", "--device", "cpu",
        *(arg for item in TINY_SETS for arg in ("--set", item))]
"""`mbpo train` arguments for a tiny InvertedPendulum run (300 env steps, evaluations every 100)."""


def mbpo(runs_dir: Path, *args: str, input: str | None = None) -> Result:
    """Invoke the CLI in-process with --runs-dir."""
    return runner.invoke(app, ["--runs-dir", str(runs_dir), *args], input=input)


def one_error_line(result: Result, code: int = 2) -> str:
    """The single stderr line of a failed command (exit `code`: 2 for bad input), no traceback, nothing else."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def train_runs(runs_dir: Path, runs: dict[str, list[str]]) -> dict[str, str]:
    """Train each named run (`mbpo train` arguments) into `runs_dir`'s own SQLite registry, whatever
    MBPO_REGISTRY_URL says, leaving torch's thread count as it was; name -> run id."""
    threads, url = torch.get_num_threads(), os.environ.pop("MBPO_REGISTRY_URL", None)
    ids = {}
    try:
        for name, args in runs.items():
            result = mbpo(runs_dir, "train", *args, "--json", "--name", f"tiny-{name}")
            assert result.exit_code == 0, result.output
            ids[name] = json.loads(result.stdout)["id"]
    finally:
        torch.set_num_threads(threads)
        if url is not None:
            os.environ["MBPO_REGISTRY_URL"] = url
    return ids
