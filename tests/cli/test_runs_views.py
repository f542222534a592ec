"""`runs list` at 80 columns, `runs show` (config, `mbpo eval` evaluations, checkpoint kinds as text) and
`runs metrics`, on registry rows made without training."""

import csv
import io
import json
from pathlib import Path

import pytest
from clihelpers import mbpo, one_error_line
from rich.console import Console

from mbpo_cli.cli.run_tables import runs_table, short_count
from mbpo_cli.config.load import resolve_config
from mbpo_cli.runs.registry import Registry

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


def _column_text(lines: list[str], header: str, column: str, next_column: str) -> str:
    """The text of `column` (left-justified, as is the next one) in every line below the header, joined: a
    wrapped cell comes out whole."""
    start, end = header.index(f" {column} ") + 1, header.index(f" {next_column} ") + 1
    below = lines[lines.index(header) + 2:]
    return "".join(line[start:end].strip() for line in below)


def _render(width: int, rows: list[dict]) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(runs_table(rows, "Runs in runs", width))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 110, 150])
def test_runs_list_keeps_every_value_whole_at_any_width(width: int) -> None:
    """At 80 columns every column was cut ('stat…', 'Hopp…'): now what is shown is whole (a long name wraps)."""
    rows = [{"id": "5cc5659a", "name": "invertedpendulum-v5-model_free-s1-d47066cd", "status": "interrupted (stale)",
             "group": None, "algo": "model_free", "env_id": "InvertedPendulum-v5", "seed": 12, "env_steps": 12_345,
             "target_steps": 125_000, "last_eval_return": 1234.56, "created_at": "2026-11-23T16:01:09"}]
    text = _render(width, rows)
    assert "…" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if " name " in line)
    for value in ("5cc5659a", "1,234.6", "InvertedPendulum-v5"):
        assert value in text, (value, text)
    assert _column_text(lines, header, "name", "status") == rows[0]["name"], text
    assert _column_text(lines, header, "status", "group" if width >= 140 else "algo" if width >= 110 else "env") \
        in ("interrupted(stale)", "interrupted (stale)"), text
    assert ("12,345/125,000" if width >= 110 else "12.3k/125k") in text
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
