"""`mbpo compare --x wall`: curves, milestones, thresholds and final returns over training wall time.

Runs are written straight into a registry with known wall times (the `wall_seconds` metric of each evaluation's
epoch), so every number is worked out by hand. Returns are straight lines in env steps, and env steps straight lines
in seconds, so returns are straight lines in seconds too:

* hopper-mbpo, seeds 0..2, evals every 1,000 steps up to 5,000, return = step / 10 + 10 * seed. Seeds 0 and 1
  train 1,000 steps in 20 s (return = 5 t + 10 * seed at t seconds), seed 2 in 25 s (return = 4 t + 20).
* sac-seeds (a registry group), algo sac, seeds 0..2, evals every 1,000 steps up to 10,000, 10 s per 1,000 steps:
  return = step / 40 + 10 * seed = 2.5 t + 10 * seed.

With three seeds the IQM (scipy's trim_mean(x, 0.25) cuts int(0.75) = 0 values per side) equals the mean.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from clihelpers import mbpo
from rich.console import Console

from mbpo_cli.cli import common
from mbpo_cli.reports import stats
from mbpo_cli.reports.axis import Axis, time_unit
from mbpo_cli.reports.compare import build_report, load_curves, parse_seconds, plot_data
from mbpo_cli.runs.registry import Registry, RunInfo

MBPO_STEPS = [1000, 2000, 3000, 4000, 5000]
SAC_STEPS = [1000 * i for i in range(1, 11)]
SECONDS_PER_1000 = {("mbpo", 0): 20.0, ("mbpo", 1): 20.0, ("mbpo", 2): 25.0, ("sac", 0): 10.0, ("sac", 1): 10.0,
                    ("sac", 2): 10.0}
"""Training seconds per 1,000 env steps, by (algo, seed)."""


def config(algo: str, seed: int) -> dict:
    return {"env": {"id": "Hopper-v5", "kwargs": {}, "termination": "auto"}, "algo": algo,
            "train": {"seed": seed, "device": "cpu", "threads": 1}}


def add_run(registry: Registry, algo: str, seed: int, steps: list[int], group: str | None = None) -> RunInfo:
    """A finished run whose epochs logged eval_return and wall_seconds at `steps`."""
    run = registry.create_run(name=None, preset="hopper", env_id="Hopper-v5", algo=algo, seed=seed,
                              config=config(algo, seed), device="cpu", command="test", target_steps=steps[-1],
                              group=group)
    per_step = 1 / 10 if algo == "mbpo" else 1 / 40
    wall = [s / 1000 * SECONDS_PER_1000[algo, seed] for s in steps]
    registry.log_metrics(run.id, [(s, "eval_return", s * per_step + 10 * seed) for s in steps])
    registry.log_metrics(run.id, [(s, "wall_seconds", t) for s, t in zip(steps, wall, strict=True)])
    registry.heartbeat(run.id, env_steps=steps[-1], wall_seconds=wall[-1])
    registry.set_status(run.id, "finished")
    return registry.get_run(run.id)


class Timed:
    def __init__(self, runs_dir: Path, mbpo: list[RunInfo], sac: list[RunInfo]) -> None:
        self.runs_dir = runs_dir
        self.mbpo = mbpo
        self.sac = sac

    @property
    def args(self) -> list[str]:
        return [r.id for r in self.mbpo] + ["sac-seeds"]


@pytest.fixture(scope="session")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Timed]:
    runs_dir = tmp_path_factory.mktemp("compare-wall") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MBPO_REGISTRY_URL", raising=False)
        with Registry.open(runs_dir) as registry:
            registry.ensure_group("sac-seeds", "seeds")
            mbpo_runs = [add_run(registry, "mbpo", s, MBPO_STEPS) for s in range(3)]
            sac_runs = [add_run(registry, "sac", s, SAC_STEPS, group="sac-seeds") for s in range(3)]
    yield Timed(runs_dir, mbpo_runs, sac_runs)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(width=250))


def compare_json(runs_dir: Path, *args: str) -> dict:
    result = mbpo(runs_dir, "compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def row_of(rows: list[dict], group: str, **match: object) -> dict:
    found = [r for r in rows if r["group"] == group and all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, rows
    return found[0]


# ---------------------------------------------------------------------------------------------
# The numbers, by hand
# ---------------------------------------------------------------------------------------------


def test_wall_curves_are_the_runs_returns_at_their_training_times(timed: Timed) -> None:
    with Registry.open(timed.runs_dir) as registry:
        runs = [*timed.mbpo, *timed.sac]
        curves = load_curves(registry, runs, x=Axis.WALL)
    seconds, returns = curves[timed.mbpo[2].id]
    assert seconds.tolist() == [25.0, 50.0, 75.0, 100.0, 125.0]
    assert returns.tolist() == [120.0, 220.0, 320.0, 420.0, 520.0]
    assert curves[timed.sac[0].id][0].tolist() == [10.0 * i for i in range(1, 11)]
    report = build_report(runs, curves, x=Axis.WALL)
    data = plot_data(report, curves)
    grid, values = data["hopper-mbpo"]
    # the union of every run's eval times
    assert grid.tolist() == [10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100, 125]
    at_60 = values[:, grid.tolist().index(60)]
    assert at_60.tolist() == pytest.approx([300.0, 310.0, 260.0])  # 5 t, 5 t + 10, 4 t + 20
    assert np.isnan(values[0, 0]) and np.isnan(values[0, -1])  # seed 0 has no value at 10 s or 125 s
    assert values[2, -1] == pytest.approx(520.0)


def test_json_numbers_over_wall_time_match_hand_computed_values(timed: Timed) -> None:
    data = compare_json(timed.runs_dir, *timed.args, "--x", "wall")
    assert data["x"] == "wall"
    assert "not counted" in data["wall"]
    assert "training time" in data["interpolation"] and "env step" not in data["interpolation"]
    assert data["threshold_rule"].startswith("time to threshold: the first training time")
    # 25/50/75/100% of the shortest run's last eval time (100 s), from the latest first eval time (25 s) on
    assert data["milestones"] == [25, 50, 75, 100]
    row = row_of(data["returns"], "hopper-mbpo", step=50)
    assert (row["n_seeds"], row["mean"], row["iqm"]) == (3, pytest.approx(730 / 3), pytest.approx(730 / 3))
    low, high = stats.bootstrap_ci(np.array([250.0, 260.0, 220.0]), seed=0)  # 5 t, 5 t + 10, 4 t + 20 at 50 s
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert row_of(data["returns"], "sac-seeds", step=50)["iqm"] == pytest.approx(135.0)  # 125, 135, 145

    # threshold: SAC's final IQM at its final time (100 s): 250, 260, 270
    eff_mbpo, eff_sac = row_of(data["efficiency"], "hopper-mbpo"), row_of(data["efficiency"], "sac-seeds")
    assert eff_mbpo["threshold"] == pytest.approx(260.0)
    # MBPO's IQM is (14 t + 30) / 3: it reaches 260 at t = 750 / 14 s and stays above; SAC's, 2.5 t + 10, at 100 s
    assert eff_mbpo["steps"] == pytest.approx(750 / 14)
    assert eff_sac["steps"] == pytest.approx(100.0)
    assert eff_mbpo["ratio"] == pytest.approx(100 / (750 / 14)) and eff_mbpo["ratio_is_lower_bound"] is False
    assert (eff_mbpo["seeds_reaching"], eff_sac["seeds_reaching"]) == (3, 2)  # SAC seed 0 ends at 250
    assert (eff_mbpo["searched_until"], eff_sac["searched_until"]) == (100.0, 100.0)
    assert eff_mbpo["wall_to_threshold"] is None  # measured, not estimated
    # AUC over [25 s, 100 s]; low 25 (SAC seed 0 at 10 s), high 520 (MBPO seed 2 at 125 s)
    assert data["auc_interval"] == pytest.approx({"start": 25.0, "end": 100.0, "low": 25.0, "high": 520.0})
    assert eff_mbpo["auc"] == pytest.approx(((312.5 + 322.5 + 270.0) / 3 - 25) / 495)  # mean of 5 t over 25-100: 312.5
    assert eff_sac["auc"] == pytest.approx((166.25 - 25) / 495)  # 2.5 * 62.5 + 10 * seed

    final = row_of(data["final"], "hopper-mbpo")
    assert (final["step"], final["iqm"]) == (100.0, pytest.approx(1430 / 3))  # 500, 510, 420 at 100 s
    assert (final["p_step"], final["p_improvement"]) == (100.0, pytest.approx(1.0))
    assert row_of(data["final"], "sac-seeds")["iqm"] == pytest.approx(260.0)
    # the wall-clock table is the same on either axis: the runs' recorded totals
    wall = row_of(data["wall_clock"], "hopper-mbpo")
    assert (wall["wall_seconds"], wall["env_steps"]) == pytest.approx(((100 + 100 + 125) / 3, 5000.0))


def test_milestones_in_seconds(timed: Timed) -> None:
    data = compare_json(timed.runs_dir, *timed.args, "--x", "wall", "--at", "30s,1m,1.5m")
    assert data["milestones"] == [30, 60, 90]
    assert row_of(data["returns"], "hopper-mbpo", step=60)["iqm"] == pytest.approx(290.0)  # 300, 310, 260
    assert row_of(data["returns"], "hopper-mbpo", step=90)["iqm"] == pytest.approx(430.0)  # 450, 460, 380
    assert row_of(data["returns"], "sac-seeds", step=90)["iqm"] == pytest.approx(235.0)  # 225, 235, 245
    data = compare_json(timed.runs_dir, *timed.args, "--x", "wall", "--at", "2m")
    row = row_of(data["returns"], "hopper-mbpo", step=120)
    assert row["n_seeds"] == 1 and row["iqm"] == pytest.approx(500.0)  # only seed 2 trained 120 s: 4 t + 20
    assert any("no run of sac-seeds has a value at training time 2m 00s (its evaluations span training time "
               "10.0 s-1m 40s; never extrapolated)" in note for note in data["notes"])


def test_table_over_wall_time(timed: Timed) -> None:
    result = mbpo(timed.runs_dir, "compare", *timed.args, "--x", "wall")
    assert result.exit_code == 0, result.output
    text = result.stdout
    flat = " ".join(text.split())
    lines = text.splitlines()

    def line_with(*parts: str) -> str:
        found = [line for line in lines if all(p in line for p in parts)]
        assert found, (parts, text)
        return found[0]

    assert "training time" in line_with("group", "seeds", "mean", "IQM")
    assert "243.3" in line_with("50.0 s", "3", "243.3")  # hopper-mbpo at 50 s
    assert ("Time efficiency: training time until the IQM curve reaches threshold 260.0 (final IQM of sac-seeds) "
            "and stays at or above it") in flat
    row = line_with("hopper-mbpo", "53.6 s", "3/3")
    assert "1.87x" in row
    assert "1.00x (baseline)" in line_with("sac-seeds", "1m 40s", "2/3")
    assert "~wall to threshold" not in text  # the efficiency table measures it
    assert "1m 48s" in line_with("hopper-mbpo", "5,000")  # mean wall time (100 + 100 + 125) / 3 s
    assert "476.7" in line_with("hopper-mbpo", "1m 40s", "1.00")  # final return at 100 s, P(better) 1.00
    assert "last common eval time" in flat
    assert "each run's mean return over training time 25.0 s-1m 40s" in flat
    assert "time: training time is a run's training wall-clock seconds" in flat
    assert "the plot's x: seconds of training wall time" in text


def test_csv_over_wall_time_has_steps_and_seconds(timed: Timed) -> None:
    result = mbpo(timed.runs_dir, "compare", *timed.args, "--x", "wall", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["run_id", "group", "seed", "step", "wall_seconds", "return"]
    assert len(rows) == 1 + 3 * len(MBPO_STEPS) + 3 * len(SAC_STEPS)
    seed2 = [r for r in rows[1:] if r[0] == timed.mbpo[2].id]
    assert [(int(r[3]), float(r[4]), float(r[5])) for r in seed2] == [(1000, 25.0, 120.0), (2000, 50.0, 220.0),
                                                                      (3000, 75.0, 320.0), (4000, 100.0, 420.0),
                                                                      (5000, 125.0, 520.0)]


def test_plot_axis_is_labelled_in_time_units(timed: Timed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # text stays text in the SVG
    monkeypatch.setitem(matplotlib.rcParams, "svg.hashsalt", "compare")
    wall_svg, steps_svg = tmp_path / "wall.svg", tmp_path / "steps.svg"
    assert mbpo(timed.runs_dir, "compare", *timed.args, "--x", "wall", "--plot", str(wall_svg)).exit_code == 0
    assert mbpo(timed.runs_dir, "compare", *timed.args, "--plot", str(steps_svg)).exit_code == 0
    # the longest run trained 125 s: more than 2 minutes, so the axis is in minutes
    assert "training wall-clock time (minutes; time between sessions not counted)" in wall_svg.read_text()
    assert "env steps (random exploration included)" in steps_svg.read_text()
    assert time_unit(120) == (1.0, "seconds")
    assert time_unit(121) == (60.0, "minutes")
    assert time_unit(7200) == (60.0, "minutes")
    assert time_unit(7201) == (3600.0, "hours")


def test_parse_seconds() -> None:
    assert parse_seconds("90, 30m,1.5h,2min,45s,1_000") == [90, 1800, 5400, 120, 45, 1000]


# ---------------------------------------------------------------------------------------------
# A resumed run: the time between its sessions is not on the axis
# ---------------------------------------------------------------------------------------------


def test_a_resumed_runs_wall_axis_leaves_out_the_hours_between_sessions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Session 1 trained steps 1,000-2,000 (10 s each, after 0.5 s of setup) and stopped; session 2 started five hours
    # later and trained 3,000-4,000. The rows' recording times show the gap; the training time (wall_seconds) does not.
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    runs_dir = tmp_path / "runs"
    start, gap = 1.7e9, 5 * 3600.0
    with Registry.open(runs_dir) as registry:
        resumed = registry.create_run(name="resumed", preset="hopper", env_id="Hopper-v5", algo="sac", seed=0,
                                      config=config("sac", 0), device="cpu", command="test", target_steps=4000)
        for step, trained, recorded in ((1000, 10.5, start + 10.5), (2000, 20.5, start + 20.5),
                                        (3000, 30.5, start + 20.5 + gap + 10), (4000, 40.5, start + 20.5 + gap + 20)):
            registry.log_metrics(resumed.id, [(step, "eval_return", step / 10), (step, "wall_seconds", trained)],
                                 wall_time=recorded)
        registry.heartbeat(resumed.id, env_steps=4000, wall_seconds=40.5)
        registry.set_status(resumed.id, "finished")
    data = compare_json(runs_dir, resumed.id, "--x", "wall")
    # 50/75/100% of 40 s (the last eval time, rounded down); 25% (10 s) is before the first eval (10.5 s)
    assert data["milestones"] == [20, 30, 40]
    assert [(r["step"], r["iqm"]) for r in data["returns"]] == [(20, pytest.approx(195.0)), (30, pytest.approx(295.0)),
                                                               (40, pytest.approx(395.0))]
    assert (data["final"][0]["step"], data["final"][0]["iqm"]) == (40.5, pytest.approx(400.0))  # the last eval
