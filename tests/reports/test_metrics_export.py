"""Tests for `mbpo runs export` (mbpo_cli.reports.metrics_export and the CLI) on a synthetic registry.

Every event file written is read back with TensorBoard's own reader (`EventAccumulator`) and compared with the
registry's rows, a metric under its namespaced tag (`eval/eval_return`; the CSV keeps the registry's keys). TensorBoard
stores a scalar as a 32-bit float: values are compared after the same rounding.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from clihelpers import mbpo, one_error_line
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbpo_cli.config.metrics import tensorboard_tag
from mbpo_cli.reports.metrics_export import CSV_HEADER, folder_names, run_scalars, write_csv
from mbpo_cli.runs.registry import Registry, RunInfo

STEPS = [100, 200, 300]
MISSING = "error: --format tensorboard needs the tensorboard package: pip install 'mbpo-cli[tensorboard]'"


def add_run(registry: Registry, name: str, seed: int, group: str | None = None) -> RunInfo:
    """A run with three epochs of metrics (values that need more than 32 bits), and two `mbpo eval` records."""
    run = registry.create_run(name=name, preset="inverted_pendulum", env_id="InvertedPendulum-v5", algo="mbpo",
                              seed=seed, config={"train": {"seed": seed}}, device="cpu", command="test",
                              target_steps=STEPS[-1], group=group)
    rows = []
    for i, step in enumerate(STEPS, start=1):
        rows += [(step, "eval_return", 10.0 * i + seed + 0.1), (step, "model_loss", 1 / (3 * i + seed)),  # unknown
                 (step, "wall_seconds", 2.5 * i)]
    rows.append((200, "done_holdout_recall", 0.75))  # a key logged at one step only
    registry.log_metrics(run.id, rows)
    registry.heartbeat(run.id, env_steps=STEPS[-1], wall_seconds=7.5)
    registry.add_evaluation(run.id, checkpoint="best:200", episodes=2, seed=0, deterministic=True,
                            returns=[20.0, 30.0], lengths=[20, 30])
    registry.add_evaluation(run.id, checkpoint="final:300", episodes=2, seed=0, deterministic=False,
                            returns=[5.0, 6.0], lengths=[5, 6])
    return registry.get_run(run.id)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    with Registry.open(folder) as registry:
        registry.ensure_group("ip-seeds", "seeds")
        add_run(registry, "ip-a", 0, group="ip-seeds")
        add_run(registry, "ip-b", 1, group="ip-seeds")
    return folder


def expected(registry: Registry, run: RunInfo, tags_of_metrics: bool = False) -> dict[str, list[tuple[int, float]]]:
    """The registry's metric rows and evaluations of `run` as key (or, with `tags_of_metrics`, TensorBoard tag) ->
    [(step, value)], in step order."""
    tags: dict[str, list[tuple[int, float]]] = {}
    for step, key, value in registry.metrics(run.id):
        tags.setdefault(tensorboard_tag(key) if tags_of_metrics else key, []).append((step, value))
    for evaluation in registry.evaluations(run.id):
        section = "evaluation" if evaluation.deterministic else "evaluation_stochastic"
        step = int(evaluation.checkpoint.split(":")[1])
        tags.setdefault(f"{section}/mean_return", []).append((step, evaluation.mean))
        tags.setdefault(f"{section}/std_return", []).append((step, evaluation.std))
    return tags


def read_events(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    """Tag -> [(step, value, wall time)] as TensorBoard reads the folder."""
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def f32(value: float) -> float:
    return float(np.float32(value))


def test_event_files_hold_every_metric_and_evaluation_at_its_step(runs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    result = mbpo(runs_dir, "runs", "export", "ip-a", "ip-b", "--format", "tensorboard", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["ip-a", "ip-b"]
    assert f"tensorboard --logdir {out}" in result.stdout
    with Registry.open(runs_dir) as registry:
        for name in ("ip-a", "ip-b"):
            run = registry.get_run(name)
            assert len(list((out / name).glob("events.out.tfevents.*"))) == 1
            events = read_events(out / name)
            want = expected(registry, run, tags_of_metrics=True)
            assert set(events) == set(want) == {"eval/eval_return", "other/model_loss", "time/wall_seconds",
                                                "model/done_holdout_recall",
                                                "evaluation/mean_return", "evaluation/std_return",
                                                "evaluation_stochastic/mean_return",
                                                "evaluation_stochastic/std_return"}
            for tag, rows in want.items():
                assert [(s, v) for s, v, _ in events[tag]] == [(s, f32(v)) for s, v in rows], tag
            assert [(s, v) for s, v, _ in events["evaluation/mean_return"]] == [(200, 25.0)]
            # a metric's wall time: the run's creation plus its training wall seconds at that step
            start = run.created_at.timestamp()
            assert [w for _, _, w in events["eval/eval_return"]] == pytest.approx([start + 2.5, start + 5.0,
                                                                                    start + 7.5])
            assert [w for _, _, w in events["model/done_holdout_recall"]] == pytest.approx([start + 5.0])


def test_a_group_exports_its_runs_and_exporting_again_replaces_the_event_files(runs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    assert mbpo(runs_dir, "runs", "export", "ip-seeds", "--out", str(out)).exit_code == 0  # tensorboard: default
    assert mbpo(runs_dir, "runs", "export", "ip-seeds", "--out", str(out), "--overwrite").exit_code == 0
    for name in ("ip-a", "ip-b"):
        assert len(list((out / name).glob("events.out.tfevents.*"))) == 1
        assert [s for s, _, _ in read_events(out / name)["eval/eval_return"]] == STEPS  # not each step twice


def test_folder_names_never_collide(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "runs") as registry:
        runs = [add_run(registry, "Run-A", 0), add_run(registry, "run-a", 1), add_run(registry, "other", 2)]
        names = folder_names(runs)
    assert names == {runs[0].id: "Run-A", runs[1].id: f"run-a-{runs[1].id}", runs[2].id: "other"}


def test_csv_round_trips_the_registry(runs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.csv"
    result = mbpo(runs_dir, "runs", "export", "ip-a", "ip-b", "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    with out.open(newline="") as stream:
        reader = csv.reader(stream)
        assert tuple(next(reader)) == CSV_HEADER
        rows = [(run_id, name, int(step), key, float(value)) for run_id, name, step, key, value in reader]
    with Registry.open(runs_dir) as registry:
        want = []
        for name in ("ip-a", "ip-b"):
            run = registry.get_run(name)
            want += sorted((run.id, name, step, key, value) for key, values in expected(registry, run).items()
                           for step, value in values)
        assert sorted(rows) == sorted(want)  # exact floats: the CSV keeps full precision
        assert len(rows) == 2 * (3 * 3 + 1 + 4)
        stdout = mbpo(runs_dir, "runs", "export", "ip-a", "ip-b", "--format", "csv", "--out", "-")
        assert stdout.exit_code == 0
        assert stdout.stdout == out.read_text()
        buffer = io.StringIO()
        assert write_csv(registry, [registry.get_run("ip-a")], buffer) == len(rows) // 2


def test_run_scalars_are_every_metric_and_evaluation_in_step_order(runs_dir: Path) -> None:
    """ip-a (seed 0): the exact scalars of `add_run`, by step then key; a metric at the run's creation time plus its
    training wall seconds at that step, an evaluation at the checkpoint's step and the time it was recorded."""
    with Registry.open(runs_dir) as registry:
        run = registry.get_run("ip-a")
        scalars = run_scalars(registry, run)
        recorded = {e.checkpoint: e.created_at.timestamp() for e in registry.evaluations(run.id)}
    start = run.created_at.timestamp()
    assert [(s.step, s.key, s.value, s.tag) for s in scalars] == [
        (100, "eval_return", 10.1, "eval/eval_return"),
        (100, "model_loss", 1 / 3, "other/model_loss"),
        (100, "wall_seconds", 2.5, "time/wall_seconds"),
        (200, "done_holdout_recall", 0.75, "model/done_holdout_recall"),
        (200, "eval_return", 20.1, "eval/eval_return"),
        (200, "evaluation/mean_return", 25.0, "evaluation/mean_return"),
        (200, "evaluation/std_return", 5.0, "evaluation/std_return"),
        (200, "model_loss", 1 / 6, "other/model_loss"),
        (200, "wall_seconds", 5.0, "time/wall_seconds"),
        (300, "eval_return", 30.1, "eval/eval_return"),
        (300, "evaluation_stochastic/mean_return", 5.5, "evaluation_stochastic/mean_return"),
        (300, "evaluation_stochastic/std_return", 0.5, "evaluation_stochastic/std_return"),
        (300, "model_loss", 1 / 9, "other/model_loss"),
        (300, "wall_seconds", 7.5, "time/wall_seconds"),
    ]
    trained = {100: 2.5, 200: 5.0, 300: 7.5}
    assert [s.wall_time for s in scalars if not s.key.startswith("evaluation")] == pytest.approx(
        [start + trained[s.step] for s in scalars if not s.key.startswith("evaluation")])
    assert [s.wall_time for s in scalars if s.key.startswith("evaluation/")] == [recorded["best:200"]] * 2
    assert [s.wall_time for s in scalars if s.key.startswith("evaluation_stochastic/")] == [recorded["final:300"]] * 2


def test_missing_tensorboard_is_one_line(runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails, as without the package
    out = tmp_path / "tb"
    assert one_error_line(mbpo(runs_dir, "runs", "export", "ip-a", "--format", "tensorboard", "--out", str(out))) \
        == MISSING
    assert not out.exists()
    # the CSV needs no tensorboard
    assert mbpo(runs_dir, "runs", "export", "ip-a", "--format", "csv", "--out", str(tmp_path / "m.csv")).exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["ip-a", "--format", "parquet", "--out", "x"], "--format: expected tensorboard or csv, got 'parquet'"),
    (["ip-a", "--out", "-"], "--out -: TensorBoard event files need a folder"),
    (["nosuchrun", "--out", "tb"], "no run or group 'nosuchrun'"),
])
def test_bad_input_is_one_line(runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                               message: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert message in one_error_line(mbpo(runs_dir, "runs", "export", *args))
    assert not (tmp_path / "tb").exists()


def test_out_that_is_a_file_or_cannot_be_written(runs_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "not a folder" in one_error_line(mbpo(runs_dir, "runs", "export", "ip-a", "--out", str(blocker)))
    line = one_error_line(mbpo(runs_dir, "runs", "export", "ip-a", "--format", "csv", "--out",
                               str(blocker / "m.csv")))
    assert line == f"error: --out {blocker / 'm.csv'}: {blocker} is not a folder"
    assert blocker.read_text() == "not a folder"
