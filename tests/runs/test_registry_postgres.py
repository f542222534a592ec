"""The `mbpo` command line on a PostgreSQL registry (`MBPO_REGISTRY_URL`), on a real server: concurrent training
processes and every command that reads or writes the registry. The runs directory then only holds run folders."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from clihelpers import TINY, mbpo

from mbpo_cli.runs.registry import Registry

EVAL_STEPS = [100, 200, 300]
"""The evaluation steps of a TINY run (one epoch every 100 env steps)."""
EPOCH_KEYS = {"epoch", "eval_return", "eval_length", "train_return", "wall_seconds", "time_env", "agent_updates"}
"""Metrics that every epoch logs, from the first one on (the model's and the agent's start after exploration)."""
WRITERS = 8


@pytest.fixture
def registry_url(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new PostgreSQL database, the registry of every `mbpo` command of the test."""
    monkeypatch.setenv("MBPO_REGISTRY_URL", postgres_url)
    return postgres_url


@pytest.mark.slow
def test_concurrent_training_processes(registry_url: str, tmp_path: Path) -> None:
    """8 `mbpo train` processes started at once on a new database (so they also race to create its schema): all
    finish, and each run keeps every metric row it logged."""
    runs = tmp_path / "runs"
    env = {**os.environ, "MBPO_REGISTRY_URL": registry_url, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", "from mbpo_cli.cli import main; main()", "--runs-dir", str(runs),
                          "train", *TINY, "--name", f"w{i}", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(WRITERS)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
    summaries = {summary["name"]: summary for summary in (json.loads(stdout) for stdout, _ in outputs)}
    assert sorted(summaries) == [f"w{i}" for i in range(WRITERS)]
    assert not (runs / "registry.db").exists()

    logged: dict[str, set[tuple[int, str]]] = {}
    with Registry(registry_url) as registry:
        runs_by_name = {run.name: run for run in registry.list_runs(status="finished")}
        assert runs_by_name.keys() == summaries.keys()
        for name, run in runs_by_name.items():
            assert (run.id, run.env_steps) == (summaries[name]["id"], 300)
            rows = registry.metrics(run.id)
            keys_at: dict[int, set[str]] = defaultdict(set)
            for step, key, _ in rows:
                keys_at[step].add(key)
            assert sorted(keys_at) == EVAL_STEPS
            assert all(keys_at[step] >= EPOCH_KEYS for step in EVAL_STEPS), keys_at
            assert registry.metrics(run.id, "eval_return")[-1][2] == summaries[name]["final_eval_return"]
            assert {c.kind for c in registry.checkpoints(run.id)} >= {"final", "best"}
            logged[name] = {(step, key) for step, key, _ in rows}
    # the same config and seed log the same (step, key) rows: a writer whose rows went missing stands out
    assert all(rows == logged["w0"] for rows in logged.values())


def test_commands_on_a_postgresql_registry(registry_url: str, tmp_path: Path) -> None:
    """train, runs list, runs show, eval, compare, resume and runs delete all use the PostgreSQL registry."""
    runs = tmp_path / "runs"
    trained = mbpo(runs, "train", *TINY, "--name", "pg", "--json")
    assert trained.exit_code == 0, trained.output
    run_id = json.loads(trained.stdout)["id"]

    listed = mbpo(runs, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(r["id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "finished")]

    shown = mbpo(runs, "runs", "show", "pg", "--json")
    assert shown.exit_code == 0, shown.output
    assert [e["step"] for e in json.loads(shown.stdout)["evals"]] == EVAL_STEPS

    evaluated = mbpo(runs, "eval", run_id[:5], "--episodes", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert len(json.loads(evaluated.stdout)["returns"]) == 2

    compared = mbpo(runs, "compare", run_id, "--format", "json")
    assert compared.exit_code == 0, compared.output
    assert run_id in compared.stdout

    resumed = mbpo(runs, "resume", run_id, "--steps", "400", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert (json.loads(resumed.stdout)["status"], json.loads(resumed.stdout)["env_steps"]) == ("finished", 400)

    with Registry(registry_url) as registry:
        run = registry.get_run(run_id)
        assert (run.status, run.env_steps, run.target_steps) == ("finished", 400, 400)
        assert [step for step, _, _ in registry.metrics(run_id, "eval_return")] == [*EVAL_STEPS, 400]
        assert [e.episodes for e in registry.evaluations(run_id)] == [2]

    deleted = mbpo(runs, "runs", "delete", run_id, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert not (runs / run_id).exists()
    with Registry(registry_url) as registry:
        assert registry.list_runs() == []
        assert registry.metrics(run_id) == []
    assert not (runs / "registry.db").exists()
