"""`runs list` and `runs metrics` at 80 columns (numbers never cut), `runs show` (config, `mbpo eval` evaluations,
checkpoint kinds as text) and `runs metrics`, on registry rows made without training."""

import csv
import io
import json
from pathlib import Path

import pytest
from clihelpers import mbpo, one_error_line
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from mbpo_cli.cli import common
from mbpo_cli.cli.runs_tables import runs_table, short_count
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.runs.registry import Registry, default_url

LOSSES = [(1000, "model_loss", 0.9), (2000, "model_loss", 0.5), (2000, "alpha", 0.2), (3000, "model_loss", 0.25)]


def _run(runs_dir: Path, name: str = "pendulum", env: str = "InvertedPendulum-v5") -> str:
    config = resolve_config(preset="inverted_pendulum")
    with Registry.open(runs_dir) as registry:
        run = registry.create_run(name=name, preset=None, env_id=env, algo="mbpo", seed=3,
                                  config=config.to_dict(), device="cpu", command="mbpo train", target_steps=125_000)
        registry.log_metrics(run.id, [(3000, "eval_return", 1234.5), *LOSSES])
        registry.add_checkpoint(run.id, step=3000, path=f"{run.id}/checkpoints/step_3000.pt", bytes=10,
                                sha256="0" * 64, kind="best")
        for mean in (100.0, 200.0):
            registry.add_evaluation(run.id, checkpoint="final", episodes=2, seed=7, deterministic=True,
                                    returns=[mean, mean], lengths=[1000, 1000])
        registry.set_status(run.id, "finished")
    return run.id


def test_a_stale_run_is_listed_as_interrupted(tmp_path: Path) -> None:
    """A `running` run whose heartbeat stopped (no lock file here) shows as `interrupted (stale)`: `--status
    interrupted` lists it, `--status running` does not."""
    runs_dir = tmp_path / "runs"
    with Registry.open(runs_dir) as registry:
        stale = registry.create_run(name="gone", preset=None, env_id="InvertedPendulum-v5", algo="mbpo", seed=0,
                                    config={}, device="cpu", command="mbpo train", target_steps=100)
    engine = create_engine(default_url(runs_dir))
    with engine.begin() as conn:
        conn.execute(text("UPDATE runs SET heartbeat_at = '2001-01-01 00:00:00.000000'"))
    engine.dispose()
    listed = {status: json.loads(mbpo(runs_dir, "runs", "list", "--status", status, "--json").stdout)
              for status in ("interrupted", "running")}
    assert [(r["id"], r["status"]) for r in listed["interrupted"]] == [(stale.id, "interrupted (stale)")]
    assert listed["running"] == []


def _render(width: int, *tables: Table) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    for table in tables:
        console.print(table)
    return console.export_text()


def _fits_with_values_whole(text: str, width: int, values: list[str]) -> None:
    """No line of `text` is wider than `width`, and every value is a whole word of it (never cut nor wrapped)."""
    assert max(len(line) for line in text.splitlines()) <= width, text
    words = set(text.split())
    for value in values:
        assert value in words, (value, text)


ROWS = [
    {"id": "5cc5659a", "name": "invertedpendulum-v5-model_free-s1-d47066cd", "status": "interrupted (stale)",
     "group": None, "algo": "model_free", "env_id": "InvertedPendulum-v5", "seed": 12, "env_steps": 12_345,
     "target_steps": 125_000, "last_eval_return": 1234.56, "created_at": "2026-11-23T16:01:09"},
    {"id": "0a1b2c3d", "name": "a-very-long-descriptive-experiment-name-with-seed-s7", "status": "finished",
     "group": "hopper-ablation-rollout-length-98c1a1", "algo": "mbpo",
     "env_id": "mymodule:MyVeryLongCustomEnvironmentName-v3", "seed": 7, "env_steps": 1_250_000,
     "target_steps": 1_250_000, "last_eval_return": -12345.67, "created_at": "2026-11-24T09:30:00"},
    {"id": "ffff0000", "name": "r", "status": "running", "group": None, "algo": "sac", "env_id": "Hopper-v5",
     "seed": 0, "env_steps": 0, "target_steps": 5_000, "last_eval_return": 1000.0,
     "created_at": "2026-11-25T10:00:00"},
]


@pytest.mark.parametrize("width", [80, 110, 150])
def test_runs_list_keeps_every_number_whole_and_names_on_one_line(width: int) -> None:
    """At 80 columns the header read 'last eva', values '1,000.', names wrapped over 3-4 lines and a long env id
    pushed the last-eval column out. Now every number, id and header is whole, and a long name or env id is
    shortened in the middle on its run's line (its start and its distinguishing end kept)."""
    text = _render(width, runs_table(ROWS, "Runs in runs", width))
    lines = text.splitlines()
    steps = ["12,345/125,000", "1,250,000/1,250,000", "0/5,000"] if width >= 110 else [
        "12.3k/125k", "1.25M/1.25M", "0/5,000"]
    _fits_with_values_whole(text, width, ["5cc5659a", "0a1b2c3d", "ffff0000", "1,234.6", "-12,345.7", "1,000.0",
                                          "Hopper-v5", "r", *steps])
    assert any("last eval" in line for line in lines)
    for row in ROWS:
        line = next(line for line in lines if row["id"] in line)
        for name in (row["name"], row["env_id"]):
            assert name in line or (name[:4] in line and name[-3:] in line and "…" in line), line
    assert ("model_free" in text) == (width >= 110)
    assert ("2026-11-23 16:01" in text) == (width >= 140)


def test_short_counts() -> None:
    assert [short_count(n) for n in (0, 9_999, 10_000, 12_345, 125_000, 999_499, 999_999, 1_250_000)] == [
        "0", "9,999", "10k", "12.3k", "125k", "999k", "1M", "1.25M"]


def test_runs_show_has_the_config_the_eval_evaluations_and_the_checkpoint_kind(tmp_path: Path) -> None:
    run_id = _run(tmp_path)
    result = mbpo(tmp_path, "runs", "show", run_id)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Checkpoints" in text and "best" in text and "step_3000.pt" in text
    assert "[1, 15, 1, 1]" in text  # a value in brackets is text, not Rich markup
    assert "Evaluations recorded by `mbpo eval`" in text and "200.0" in text
    assert "Config (as resolved at start)" in text and "env.id" in text and "train.steps" in text
    assert "Config" not in mbpo(tmp_path, "runs", "show", run_id, "--brief").stdout


def test_runs_metrics_summary_keys_csv_and_json(tmp_path: Path) -> None:
    run_id = _run(tmp_path)
    summary = mbpo(tmp_path, "runs", "metrics", run_id)
    assert summary.exit_code == 0, summary.output
    model_loss = next(line for line in summary.stdout.splitlines() if "model_loss" in line).split()
    assert model_loss[1:] == ["3", "1,000-3,000", "0.25", "0.25", "0.5", "0.9"]
    chosen = mbpo(tmp_path, "runs", "metrics", run_id, "--keys", "model_loss,alpha", "--last", "2")
    assert chosen.exit_code == 0, chosen.output
    lines = [line.split() for line in chosen.stdout.splitlines() if line.strip().startswith(("2,000", "3,000",
                                                                                             "1,000"))]
    assert lines == [["2,000", "0.5", "0.2"], ["3,000", "0.25", "-"]]
    assert "last 2 of 3 logged steps" in chosen.stdout
    as_csv = mbpo(tmp_path, "runs", "metrics", run_id, "--csv", "--keys", "model_loss")
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["step", "key", "value"], ["1000", "model_loss", "0.9"], ["2000", "model_loss", "0.5"],
        ["3000", "model_loss", "0.25"]]
    as_json = json.loads(mbpo(tmp_path, "runs", "metrics", run_id, "--json").stdout)
    assert {"step": 2000, "key": "alpha", "value": 0.2} in as_json and len(as_json) == 5


def test_runs_metrics_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    run_id = _run(tmp_path)
    line = one_error_line(mbpo(tmp_path, "runs", "metrics", run_id, "--keys", "losss"))
    assert line == "error: --keys: losss: the run has alpha, eval_return, model_loss"


KEYS = ["actor_loss", "agent_updates", "alpha", "alpha_loss", "critic_loss", "diag_disagreement",
        "diag_model_error", "diag_model_return", *(f"diag_open_loop_h{h}" for h in range(1, 11)), "diag_reward_error",
        "entropy", "epoch", "eval_length", "eval_return", "eval_return_std", "model_buffer_size",
        "model_elite_loss_max", "model_elite_loss_min", "model_epochs", "model_holdout_loss", "model_train_loss",
        "rollout_k", "rollout_mean_length", "time_agent", "time_diag", "time_env", "time_eval", "time_model",
        "time_model_fit", "time_rollout", "train_return", "training_epoch", "wall_seconds"]
"""The keys a real MBPO run logs."""
VALUES = {1234567.8: "1,234,567.8", -0.00001234: "-1.234e-05", 0.0006489: "0.0006489", 98765.43: "98,765.4",
          -1.5: "-1.5"}
"""Metric values as wide as they come, and how they are shown."""


@pytest.fixture
def many_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run with every key logged at 25 steps up to 125,000, shown on an 80-column console."""
    monkeypatch.setattr(common, "out", Console(width=80))
    run_id = _run(tmp_path)
    values = list(VALUES)
    with Registry.open(tmp_path) as registry:
        registry.log_metrics(run_id, [(step, key, values[i % len(values)]) for i, key in enumerate(KEYS)
                                      for step in range(5000, 125_001, 5000)])
    return run_id


def test_runs_metrics_summary_at_80_columns_cuts_no_number(tmp_path: Path, many_metrics: str) -> None:
    """Almost every cell of `runs metrics` was cut at 80 columns ('300-3…', '0.000…'): every key and number is
    now whole, over two tables if need be."""
    result = mbpo(tmp_path, "runs", "metrics", many_metrics)
    assert result.exit_code == 0, result.output
    _fits_with_values_whole(result.stdout, 80, [*KEYS, *VALUES.values(), "5,000-125k", "25"])


def test_runs_metrics_keys_at_80_columns_cuts_no_number(tmp_path: Path, many_metrics: str) -> None:
    """Eight keys side by side were cut to 'model…' and '-0.71…': they now go over several tables, each with the
    env step, every header and number whole."""
    keys = ["model_holdout_loss", "alpha", "eval_return", "actor_loss", "critic_loss", "diag_disagreement",
            "wall_seconds", "time_env"]
    result = mbpo(tmp_path, "runs", "metrics", many_metrics, "--keys", ",".join(keys), "--last", "3")
    assert result.exit_code == 0, result.output
    shown = {VALUES[list(VALUES)[KEYS.index(key) % len(VALUES)]] for key in keys}
    _fits_with_values_whole(result.stdout, 80, [*keys, *shown, "115,000", "120,000", "125,000"])
    assert result.stdout.count("125,000") == 2  # one table per group of keys, each with its env steps
    assert "last 3 of 27 logged steps" in result.stdout  # and the 3 steps of _run


def test_runs_metrics_unknown_key_of_a_real_run_is_a_bounded_line(tmp_path: Path, many_metrics: str) -> None:
    """The old help example's `--keys model_loss` listed all 45 keys of a real run in one line of 800 characters:
    now the closest ones, and where to see them all."""
    line = one_error_line(mbpo(tmp_path, "runs", "metrics", many_metrics, "--keys", "alpha,model_los"))
    assert line.startswith("error: --keys: model_los: did you mean model_loss, ")
    assert line.endswith(f"? the run has {len(KEYS) + 1} keys (every one: mbpo runs metrics RUN)")  # + _run's
    assert len(line) < 160
