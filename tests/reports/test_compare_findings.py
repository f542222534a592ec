"""`mbpo compare` findings of a tester's report: milestones without data, unstated interpolation, a probability of
improvement from one seed, and environments compared side by side without a warning.

Runs are written straight into a registry with straight-line eval curves, so every number is worked out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from clihelpers import mbpo
from rich.console import Console

from mbpo_cli.cli import common
from mbpo_cli.reports import stats
from mbpo_cli.reports.compare import STEP_AXIS, VALUES_AT_STEPS, Report, build_report, group_runs, load_curves
from mbpo_cli.runs.registry import Registry, RunInfo

Line = Callable[[int, int], float]


def slope(per_step: float, per_seed: float = 10.0) -> Line:
    """return = step * per_step + per_seed * seed."""
    return lambda step, seed: step * per_step + per_seed * seed


def config(env: str, algo: str, seed: int) -> dict:
    return {"env": {"id": env, "kwargs": {}, "termination": "auto"}, "algo": algo,
            "train": {"seed": seed, "device": "cpu", "threads": 1}}


def add_runs(runs_dir: Path, algo: str, seeds: Sequence[int], steps: Sequence[int], line: Line,
             env: str = "Hopper-v5", run_config: Callable[[str, str, int], dict] = config) -> list[str]:
    """Finished runs with eval returns ``line(step, seed)`` at ``steps``; their ids."""
    ids = []
    with Registry.open(runs_dir) as registry:
        for seed in seeds:
            run = registry.create_run(name=None, preset=None, env_id=env, algo=algo, seed=seed,
                                      config=run_config(env, algo, seed), device="cpu", command="test",
                                      target_steps=steps[-1])
            registry.log_metrics(run.id, [(s, "eval_return", line(s, seed)) for s in steps])
            registry.heartbeat(run.id, env_steps=steps[-1], wall_seconds=10.0)
            registry.set_status(run.id, "finished")
            ids.append(run.id)
    return ids


def report_of(runs_dir: Path, ids: Sequence[str]) -> Report:
    with Registry.open(runs_dir) as registry:
        runs = [registry.get_run(i) for i in ids]
        return build_report(runs, load_curves(registry, runs))


def compare_json(runs_dir: Path, *args: str) -> dict:
    result = mbpo(runs_dir, "compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def compare_table(runs_dir: Path, *args: str) -> str:
    result = mbpo(runs_dir, "compare", *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def rows_of(data: dict, key: str, group: str) -> list[dict]:
    return [r for r in data[key] if r["group"] == group]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(width=250))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


# ---------------------------------------------------------------------------------------------
# 1. Milestones: by default only steps where every run has data; a user-given one without data says so
# ---------------------------------------------------------------------------------------------


def test_stats_milestones_drop_steps_before_the_first_evaluation() -> None:
    assert stats.milestones(2000, first_step=1000) == [1000, 1500, 2000]
    assert stats.milestones(2000, [1200], first_step=1000) == [1000, 1200, 1500, 2000]
    assert stats.milestones(2000, first_step=2500) == []  # the runs share no step range


def test_default_milestones_skip_steps_before_the_first_evaluation(runs_dir: Path) -> None:
    # evals from 1,000: 25% of the shortest run (500) is before every evaluation
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(0.1))
    ids += add_runs(runs_dir, "sac", [0, 1], [1000, 2000, 3000, 4000], slope(0.025))
    data = compare_json(runs_dir, *ids)
    assert data["milestones"] == [1000, 1500, 2000]
    assert all(row["n_seeds"] == 2 and row["iqm"] is not None for row in data["returns"])
    assert not any("no data" in note for note in data["notes"])
    assert "no data" not in compare_table(runs_dir, *ids)


def test_default_milestones_need_every_group_to_have_data(runs_dir: Path) -> None:
    # the sac runs were evaluated from 3,000 only: 1,250 and 2,500 would be rows without sac data
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000, 3000, 4000, 5000], slope(0.1))
    ids += add_runs(runs_dir, "sac", [0, 1], [3000, 4000, 5000, 6000], slope(0.025))
    data = compare_json(runs_dir, *ids)
    assert data["milestones"] == [3750, 5000]
    assert {row["n_seeds"] for row in data["returns"]} == {2}


def test_runs_sharing_no_step_range_get_each_groups_final_step(runs_dir: Path) -> None:
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(0.1))
    ids += add_runs(runs_dir, "sac", [0, 1], [5000, 6000], slope(0.025))
    data = compare_json(runs_dir, *ids)
    assert data["milestones"] == [2000, 6000]
    assert any(note.startswith("the runs share no env-step range") for note in data["notes"])
    # each group has data at its own final step; the other step is no data, with a note
    assert [(r["step"], r["n_seeds"]) for r in rows_of(data, "returns", "Hopper-v5-mbpo")] == [(2000, 2), (6000, 0)]
    assert any(note.startswith("no run of Hopper-v5-mbpo has a value at env step 6,000") for note in data["notes"])


def test_user_milestone_without_data_shows_no_data_and_a_note(runs_dir: Path) -> None:
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000, 3000], slope(0.1))
    data = compare_json(runs_dir, *ids, "--at", "500,2k,9000")
    rows = {r["step"]: r for r in rows_of(data, "returns", "Hopper-v5-mbpo")}
    assert (rows[2000]["n_seeds"], rows[2000]["mean"]) == (2, pytest.approx(205.0))
    for step in (500, 9000):
        assert (rows[step]["n_seeds"], rows[step]["mean"], rows[step]["iqm"], rows[step]["ci_low"]) == (
            0, None, None, None)
    note = ("no run of Hopper-v5-mbpo has a value at env step 500, 9,000 (its evaluations span env steps "
            "1,000-3,000; never extrapolated): no data")
    assert note in data["notes"]
    text = compare_table(runs_dir, *ids, "--at", "500,2k,9000")
    row = next(line for line in text.splitlines() if "9,000" in line and "│" in line)
    assert [cell.strip() for cell in row.split("│")[2:-1]] == ["9,000", "0", "-", "-", "no data"]
    assert f"note: {note}" in text


# ---------------------------------------------------------------------------------------------
# 2. How a value at a milestone is obtained is said, and it is what the code does
# ---------------------------------------------------------------------------------------------


def test_output_says_values_are_interpolated_and_never_extrapolated(runs_dir: Path) -> None:
    assert "linearly interpolated" in VALUES_AT_STEPS and "never extrapolated" in VALUES_AT_STEPS
    short = add_runs(runs_dir, "mbpo", [0], [1000, 2000], lambda s, _: 100.0 if s == 1000 else 300.0)
    long = add_runs(runs_dir, "mbpo", [1], [1000, 2000, 4000], lambda s, _: {1000: 0.0, 2000: 100.0, 4000: 500.0}[s])
    ids = short + long
    data = compare_json(runs_dir, *ids, "--at", "1500,3000")
    assert data["interpolation"] == VALUES_AT_STEPS
    assert data["steps"] == STEP_AXIS
    rows = {r["step"]: r for r in data["returns"]}
    # 1,500 lies halfway between two evals of both runs: 200 and 50, a linear interpolation
    assert (rows[1500]["n_seeds"], rows[1500]["mean"]) == (2, pytest.approx(125.0))
    # 3,000 is past the short run's last eval: only the long run counts (300), no extrapolation of the short one
    assert (rows[3000]["n_seeds"], rows[3000]["mean"]) == (1, pytest.approx(300.0))
    text = compare_table(runs_dir, *ids, "--at", "1500,3000")
    assert f"values: {VALUES_AT_STEPS}" in " ".join(text.split())  # the line may wrap
    assert f"steps: {STEP_AXIS}" in text  # the x-axis statement stays printed


# ---------------------------------------------------------------------------------------------
# 3. No probability of improvement (nor bootstrap CI) from fewer than 2 runs per group
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mbpo_seeds", "sac_seeds"), [([0], [0]), ([0], [0, 1, 2]), ([0, 1, 2], [0])])
def test_probability_of_improvement_needs_two_runs_per_group(runs_dir: Path, mbpo_seeds: list[int],
                                                             sac_seeds: list[int]) -> None:
    ids = add_runs(runs_dir, "mbpo", mbpo_seeds, [1000, 2000], slope(0.1))
    ids += add_runs(runs_dir, "sac", sac_seeds, [1000, 2000], slope(0.025))
    data = compare_json(runs_dir, *ids)
    final = rows_of(data, "final", "Hopper-v5-mbpo")[0]
    assert final["baseline"] == "Hopper-v5-sac" and final["p_step"] == 2000
    assert final["p_improvement"] is None  # it was 1.00 from a single pair of runs
    notes = [n for n in data["notes"] if n.startswith("P(better than baseline) is n/a (needs >= 2 runs per group")]
    assert len(notes) == 1
    assert f"Hopper-v5-mbpo ({len(mbpo_seeds)} run" in notes[0] and f"{len(sac_seeds)} run" in notes[0]
    if len(mbpo_seeds) == 1:
        assert (final["ci_low"], final["ci_high"]) == (None, None)
        assert all(r["ci_low"] is None for r in rows_of(data, "returns", "Hopper-v5-mbpo"))
    text = compare_table(runs_dir, *ids)
    row = next(line for line in text.splitlines() if "Hopper-v5-mbpo" in line and "2,000" in line and "n/a" in line)
    assert "1.00" not in row and "n/a(<2runs)" in "".join(text.split("Final return")[1].split())
    assert text.count("note: P(better than baseline) is n/a") == 1


def test_probability_of_improvement_with_two_runs_per_group(runs_dir: Path) -> None:
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(0.1))
    ids += add_runs(runs_dir, "sac", [0, 1], [1000, 2000], slope(0.025))
    data = compare_json(runs_dir, *ids)
    assert rows_of(data, "final", "Hopper-v5-mbpo")[0]["p_improvement"] == pytest.approx(1.0)  # 200, 210 vs 50, 60
    assert not any(n.startswith("P(better") for n in data["notes"])


# ---------------------------------------------------------------------------------------------
# 4. Several environments: a warning, and no normalization across them
# ---------------------------------------------------------------------------------------------


def two_envs(runs_dir: Path) -> list[str]:
    """Hopper returns 0.1 per step, InvertedPendulum returns 1 per step: two scales."""
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(0.1), env="Hopper-v5")
    ids += add_runs(runs_dir, "sac", [0, 1], [1000, 2000], slope(0.05), env="Hopper-v5")
    ids += add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(1.0), env="InvertedPendulum-v5")
    return ids


def test_several_environments_warn_once_on_stderr(runs_dir: Path) -> None:
    ids = two_envs(runs_dir)
    for fmt in ("table", "json", "csv"):
        result = mbpo(runs_dir, "compare", *ids, "--format", fmt)
        assert result.exit_code == 0, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("warning: the runs span 2 environments"), result.stderr
        assert "Hopper-v5: Hopper-v5-mbpo, Hopper-v5-sac" in lines[0]
        assert "InvertedPendulum-v5: InvertedPendulum-v5-mbpo" in lines[0]
        assert "not comparable" in lines[0] and "warning: " not in result.stdout
    data = json.loads(mbpo(runs_dir, "compare", *ids, "--format", "json").stdout)
    assert len(data["warnings"]) == 1 and data["warnings"][0].startswith("the runs span 2 environments")
    result = mbpo(runs_dir, "compare", *ids, "--threshold", "100")
    assert "--threshold 100 applies to every env" in result.stderr


def test_auc_is_normalized_per_environment(runs_dir: Path) -> None:
    ids = two_envs(runs_dir)
    data = compare_json(runs_dir, *ids)
    assert data["auc_interval"] is None  # no single normalization for two envs
    assert data["auc_intervals"] == {
        "Hopper-v5": pytest.approx({"start": 1000.0, "end": 2000.0, "low": 50.0, "high": 210.0}),
        "InvertedPendulum-v5": pytest.approx({"start": 1000.0, "end": 2000.0, "low": 1000.0, "high": 2010.0}),
    }
    auc = {r["group"]: r["auc"] for r in data["efficiency"]}
    # mean returns over [1000, 2000]: Hopper mbpo 150, 160; sac 75, 85; the pendulum 1500, 1510
    assert auc["Hopper-v5-mbpo"] == pytest.approx((155 - 50) / 160)
    assert auc["Hopper-v5-sac"] == pytest.approx((80 - 50) / 160)
    assert auc["InvertedPendulum-v5-mbpo"] == pytest.approx((1505 - 1000) / 1010)
    text = compare_table(runs_dir, *ids)
    assert "norm. AUC of Hopper-v5: each run's mean return over env steps 1,000-2,000, scaled so that 0 = 50.0" in text
    assert "norm. AUC of InvertedPendulum-v5:" in text


def test_one_environment_has_no_warning(runs_dir: Path) -> None:
    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(0.1))
    result = mbpo(runs_dir, "compare", *ids, "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    data = json.loads(result.stdout)
    assert data["warnings"] == []
    assert data["auc_interval"] == data["auc_intervals"]["Hopper-v5"]


def test_a_group_never_mixes_environments(runs_dir: Path) -> None:
    # identical configs (an old one without the env section) recorded for two envs: two groups, one env each
    def no_env(env: str, algo: str, seed: int) -> dict:
        return {"algo": algo, "train": {"seed": seed}}

    ids = add_runs(runs_dir, "mbpo", [0, 1], [1000, 2000], slope(0.1), env="Hopper-v5", run_config=no_env)
    ids += add_runs(runs_dir, "mbpo", [2, 3], [1000, 2000], slope(1.0), env="Walker2d-v5", run_config=no_env)
    with Registry.open(runs_dir) as registry:
        runs: list[RunInfo] = [registry.get_run(i) for i in ids]
    groups = group_runs(runs)
    assert [(g.env_id, {r.env_id for r in g.runs}) for g in groups] == [
        ("Hopper-v5", {"Hopper-v5"}), ("Walker2d-v5", {"Walker2d-v5"})]
    report = report_of(runs_dir, ids)
    assert set(report.auc) == {"Hopper-v5", "Walker2d-v5"} and len(report.warnings) == 1
    assert np.isfinite([r.auc for r in report.efficiency]).all()


@pytest.mark.parametrize("key", ["tensorboard", "track"])
def test_seeds_logged_to_tensorboard_or_recorded_before_the_key_stay_one_group(runs_dir: Path, key: str) -> None:
    """`train.tensorboard` and `train.track` (W&B) say how a run is logged, not what it learns: seeds with it on,
    off, or recorded before the key existed are one group."""
    def logged(flag: bool | None) -> Callable[[str, str, int], dict]:
        def make(env: str, algo: str, seed: int) -> dict:
            made = config(env, algo, seed)
            if flag is not None:
                made["train"][key] = flag
            return made
        return make

    ids = [run_id for seed, flag in ((0, True), (1, False), (2, None))
           for run_id in add_runs(runs_dir, "mbpo", [seed], [1000, 2000], slope(0.1), run_config=logged(flag))]
    with Registry.open(runs_dir) as registry:
        groups = group_runs([registry.get_run(i) for i in ids])
    assert len(groups) == 1 and len(groups[0].runs) == 3
