"""`mbpo compare --x`: its bad values and the runs it cannot place on the wall-clock axis are one line each (exit 2);
`--x steps` is the report as it was; a run trained, left for hours and resumed is timed by its training alone."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
from clihelpers import TINY, mbpo, one_error_line, train_runs
from rich.console import Console

from mbpo_cli.cli import common
from mbpo_cli.runs.registry import Registry, RunInfo

STEPS = [1000, 2000, 3000]


def add_run(registry: Registry, algo: str, seed: int, wall: list[float] | None) -> RunInfo:
    """A finished Hopper run with eval returns at STEPS and, unless `wall` is None, wall_seconds there."""
    run = registry.create_run(name=None, preset="hopper", env_id="Hopper-v5", algo=algo, seed=seed,
                              config={"env": {"id": "Hopper-v5"}, "algo": algo, "train": {"seed": seed}},
                              device="cpu", command="test", target_steps=STEPS[-1])
    registry.log_metrics(run.id, [(s, "eval_return", s / 10 + seed) for s in STEPS])
    if wall is not None:
        registry.log_metrics(run.id, [(s, "wall_seconds", t) for s, t in zip(STEPS, wall, strict=True)])
    registry.heartbeat(run.id, env_steps=STEPS[-1], wall_seconds=30.0)
    registry.set_status(run.id, "finished")
    return registry.get_run(run.id)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    monkeypatch.setattr(common, "out", Console(width=250))
    return tmp_path / "runs"


@pytest.mark.parametrize("value", ["time", "Wall", ""])
def test_a_bad_x_is_one_line_exit_2(runs_dir: Path, value: str) -> None:
    with Registry.open(runs_dir) as registry:
        run = add_run(registry, "sac", 0, [10.0, 20.0, 30.0])
    line = one_error_line(mbpo(runs_dir, "compare", run.id, "--x", value))
    assert line == f"error: --x: expected steps or wall, got {value!r}"


@pytest.mark.parametrize(("at", "message"), [("soon", "--at: expected seconds of training"),
                                             ("0.5", "--at: training times must be positive whole seconds"),
                                             ("-1m", "--at: training times must be positive whole seconds")])
def test_a_bad_at_in_seconds_is_one_line_exit_2(runs_dir: Path, at: str, message: str) -> None:
    with Registry.open(runs_dir) as registry:
        run = add_run(registry, "sac", 0, [10.0, 20.0, 30.0])
    assert message in one_error_line(mbpo(runs_dir, "compare", run.id, "--x", "wall", "--at", at))


def test_a_run_without_wall_times_is_refused_by_name(runs_dir: Path) -> None:
    with Registry.open(runs_dir) as registry:
        timed = add_run(registry, "mbpo", 0, [10.0, 20.0, 30.0])
        untimed = add_run(registry, "sac", 0, None)
    for fmt in ("table", "json", "csv"):
        line = one_error_line(mbpo(runs_dir, "compare", timed.id, untimed.id, "--x", "wall", "--format", fmt))
        assert line == (f"error: --x wall: run {untimed.id} ({untimed.name}) has no training wall time (wall_seconds) "
                        "at its evaluation at env step 1,000, so it has no place on the wall-clock axis; compare it "
                        "with --x steps")
    assert mbpo(runs_dir, "compare", timed.id, untimed.id).exit_code == 0  # on env steps it has its place


def test_a_run_whose_wall_time_goes_back_is_refused_by_name(runs_dir: Path) -> None:
    with Registry.open(runs_dir) as registry:
        run = add_run(registry, "sac", 0, [10.0, 20.0, 20.0])
    line = one_error_line(mbpo(runs_dir, "compare", run.id, "--x", "wall"))
    assert f"run {run.id} ({run.name}): its training wall time does not increase with its env steps (at env step " \
           "3,000)" in line


def test_x_steps_is_the_default_report(runs_dir: Path, tmp_path: Path) -> None:
    with Registry.open(runs_dir) as registry:
        ids = [add_run(registry, algo, seed, [10.0, 20.0, 30.0]).id for algo in ("mbpo", "sac") for seed in (0, 1)]
    for fmt in ("table", "json", "csv"):
        default = mbpo(runs_dir, "compare", *ids, "--format", fmt)
        assert default.exit_code == 0, default.output
        assert mbpo(runs_dir, "compare", *ids, "--format", fmt, "--x", "steps").stdout == default.stdout
    data = json.loads(mbpo(runs_dir, "compare", *ids, "--format", "json").stdout)
    assert "x" not in data and "wall" not in data and data["milestones"] == [1500, 2250, 3000]
    default_png, steps_png = tmp_path / "default.png", tmp_path / "steps.png"
    assert mbpo(runs_dir, "compare", *ids, "--plot", str(default_png)).exit_code == 0
    assert mbpo(runs_dir, "compare", *ids, "--plot", str(steps_png), "--x", "steps").exit_code == 0
    assert default_png.read_bytes() == steps_png.read_bytes()


def test_a_run_resumed_hours_later_is_timed_by_its_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny run trains 300 steps; every time the registry holds of it is then moved five hours back, as if it had
    # stopped then; it is resumed now to 400 steps. Its evaluation at 400 must come seconds of training after the
    # total the first session recorded, not five hours.
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    runs_dir = tmp_path / "runs"
    began = time.perf_counter()
    run_id = train_runs(runs_dir, {"wall": TINY})["wall"]
    first_session = time.perf_counter() - began
    with sqlite3.connect(runs_dir / "registry.db") as db:
        for column in ("created_at", "started_at", "ended_at", "heartbeat_at"):
            db.execute(f"UPDATE runs SET {column} = datetime({column}, '-5 hours') WHERE id = ?", (run_id,))
        db.execute("UPDATE metrics SET wall_time = wall_time - 18000 WHERE run_id = ?", (run_id,))
    db.close()
    with Registry.open(runs_dir) as registry:
        trained = registry.get_run(run_id).wall_seconds
    assert 0 < trained < first_session
    began = time.perf_counter()
    resumed = mbpo(runs_dir, "resume", run_id, "--steps", "400", "--json")
    second_session = time.perf_counter() - began
    assert resumed.exit_code == 0, resumed.output
    result = mbpo(runs_dir, "compare", run_id, "--x", "wall", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = [(int(r[3]), float(r[4])) for r in list(csv.reader(io.StringIO(result.stdout)))[1:]]
    assert [step for step, _ in rows] == [100, 200, 300, 400]
    seconds = [t for _, t in rows]
    assert seconds == sorted(seconds) and seconds[2] <= trained
    assert 0 < seconds[3] - trained < second_session  # the second session's own time, the five hours left out
