"""Tests for `mbpo compare` (mbpo_cli.report and the CLI's rendering) on a synthetic registry.

The synthetic curves are straight lines so that every number can be worked out by hand:

* hopper-mbpo, seeds 0..2, evals every 1,000 steps up to 5,000: return = step / 10 + 10 * seed;
  100 s of wall time and 5,000 env steps per run (50 steps/s).
* sac-seeds (a registry group), algo sac, seeds 0..2, evals up to 10,000: return = step / 40 + 10 * seed;
  20 s and 10,000 env steps per run (500 steps/s).

With three seeds the IQM (scipy's trim_mean(x, 0.25) cuts int(0.75) = 0 values per side) equals the mean.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clihelpers import mbpo, one_error_line
from rich.console import Console

from mbpo_cli.cli import common
from mbpo_cli.reports import stats
from mbpo_cli.reports.compare import build_report, group_runs, load_curves, parse_steps
from mbpo_cli.reports.refs import resolve_refs
from mbpo_cli.runs.registry import Registry, RunInfo

MBPO_STEPS = [1000, 2000, 3000, 4000, 5000]
SAC_STEPS = [1000 * i for i in range(1, 11)]


def mbpo_return(step: int, seed: int) -> float:
    return step / 10 + 10 * seed


def sac_return(step: int, seed: int) -> float:
    return step / 40 + 10 * seed


def config(algo: str, seed: int, batch_size: int = 100_000, device: str = "cpu", threads: int | None = 1) -> dict:
    return {
        "env": {"id": "Hopper-v5", "kwargs": {}, "termination": "auto"},
        "algo": algo,
        "rollout": {"batch_size": batch_size},
        "sac": {"updates_per_step": 20 if algo == "mbpo" else 1},
        "train": {"seed": seed, "device": device, "threads": threads, "steps": 5000 if algo == "mbpo" else 10_000},
    }


def add_run(registry: Registry, algo: str, seed: int, steps: list[int], returns: list[float], wall: float,
            group: str | None = None, **config_changes: object) -> RunInfo:
    run = registry.create_run(name=None, preset="hopper", env_id="Hopper-v5", algo=algo, seed=seed,
                              config=config(algo, seed, **config_changes), device="cpu", command="test",
                              target_steps=steps[-1], group=group)
    registry.log_metrics(run.id, [(s, "eval_return", r) for s, r in zip(steps, returns, strict=True)])
    registry.heartbeat(run.id, env_steps=steps[-1], wall_seconds=wall)
    registry.set_status(run.id, "finished")
    return registry.get_run(run.id)


class Synthetic:
    def __init__(self, runs_dir: Path, mbpo: list[RunInfo], sac: list[RunInfo], other: RunInfo) -> None:
        self.runs_dir = runs_dir
        self.mbpo = mbpo
        self.sac = sac
        self.other = other

    @property
    def mbpo_ids(self) -> list[str]:
        return [r.id for r in self.mbpo]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthetic]:
    runs_dir = tmp_path_factory.mktemp("compare") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MBPO_REGISTRY_URL", raising=False)
        with Registry.open(runs_dir) as registry:
            registry.ensure_group("sac-seeds", "seeds")
            # seed 2 trained on another device with other threads: still the same group
            mbpo = [add_run(registry, "mbpo", s, MBPO_STEPS, [mbpo_return(t, s) for t in MBPO_STEPS], 100.0,
                            device="cuda" if s == 2 else "cpu", threads=None if s == 2 else 1) for s in range(3)]
            sac = [add_run(registry, "sac", s, SAC_STEPS, [sac_return(t, s) for t in SAC_STEPS], 20.0,
                           group="sac-seeds") for s in range(3)]
            other = add_run(registry, "mbpo", 0, MBPO_STEPS, [mbpo_return(t, 0) / 2 for t in MBPO_STEPS], 50.0,
                            batch_size=50_000)
    yield Synthetic(runs_dir, mbpo, sac, other)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(width=250))


def compare_json(synthetic: Synthetic, *args: str) -> dict:
    result = mbpo(synthetic.runs_dir, "compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def by_group(rows: list[dict], name: str) -> dict:
    matches = [r for r in rows if r["group"] == name]
    assert len(matches) == 1, rows
    return matches[0]


# ---------------------------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------------------------


def test_json_numbers_match_hand_computed_values(synthetic: Synthetic) -> None:
    data = compare_json(synthetic, *synthetic.mbpo_ids, "sac-seeds")
    assert [g["name"] for g in data["groups"]] == ["hopper-mbpo", "sac-seeds"]
    assert [g["n_seeds"] for g in data["groups"]] == [3, 3]
    # 25/50/75/100% of the shortest run (5,000 steps); Hopper's paper budget (125k) is out of range
    assert data["milestones"] == [1250, 2500, 3750, 5000]
    assert data["steps"].startswith("env steps count every real step")
    row = next(r for r in data["returns"] if r["group"] == "hopper-mbpo" and r["step"] == 2500)
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(260.0)  # 250, 260, 270
    assert row["iqm"] == pytest.approx(260.0)
    low, high = stats.bootstrap_ci(np.array([250.0, 260.0, 270.0]), seed=0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert 250.0 <= row["ci_low"] < row["ci_high"] <= 270.0
    row = next(r for r in data["returns"] if r["group"] == "sac-seeds" and r["step"] == 2500)
    assert row["iqm"] == pytest.approx(72.5)  # 62.5, 72.5, 82.5

    # SAC is the default baseline (algo sac, same env); threshold = its final IQM = mean(250, 260, 270)
    assert data["baselines"] == {"Hopper-v5": "sac-seeds"}
    assert data["threshold_source"] == "baseline final IQM"
    eff_mbpo = by_group(data["efficiency"], "hopper-mbpo")
    eff_sac = by_group(data["efficiency"], "sac-seeds")
    assert eff_mbpo["threshold"] == pytest.approx(260.0)
    assert eff_mbpo["steps"] == pytest.approx(2500.0)  # step / 10 + 10 = 260
    assert eff_sac["steps"] == pytest.approx(10_000.0)  # step / 40 + 10 = 260
    assert eff_mbpo["ratio"] == pytest.approx(4.0)
    assert eff_sac["ratio"] == pytest.approx(1.0)
    assert (eff_mbpo["seeds_reaching"], eff_sac["seeds_reaching"]) == (3, 2)  # SAC seed 0 ends at 250
    # AUC over [1000, 5000] (every run covers it); low = 25 (SAC seed 0 at 1000), high = 520 (MBPO seed 2 at 5000)
    assert data["auc_interval"] == pytest.approx({"start": 1000.0, "end": 5000.0, "low": 25.0, "high": 520.0})
    assert eff_mbpo["auc"] == pytest.approx((310 - 25) / 495)  # mean return over the interval: 300 + 10 * seed
    assert eff_sac["auc"] == pytest.approx((85 - 25) / 495)  # 75 + 10 * seed
    assert eff_mbpo["wall_to_threshold"] == pytest.approx(2500 / 50)
    assert eff_sac["wall_to_threshold"] == pytest.approx(10_000 / 500)

    wall = by_group(data["wall_clock"], "hopper-mbpo")
    assert (wall["wall_seconds"], wall["env_steps"], wall["steps_per_second"]) == pytest.approx((100.0, 5000.0, 50.0))
    assert by_group(data["wall_clock"], "sac-seeds")["steps_per_second"] == pytest.approx(500.0)

    final = by_group(data["final"], "hopper-mbpo")
    assert (final["step"], final["iqm"]) == (5000, pytest.approx(510.0))
    assert final["baseline"] == "sac-seeds"
    assert final["p_step"] == 5000  # the last step both groups reach
    assert final["p_improvement"] == pytest.approx(1.0)  # 500..520 against 125..145
    final_sac = by_group(data["final"], "sac-seeds")
    assert (final_sac["step"], final_sac["iqm"], final_sac["p_improvement"]) == (10_000, pytest.approx(260.0), None)


def test_table_shows_the_same_numbers(synthetic: Synthetic) -> None:
    result = mbpo(synthetic.runs_dir, "compare", *synthetic.mbpo_ids, "sac-seeds")
    assert result.exit_code == 0, result.output
    text = result.stdout
    lines = text.splitlines()

    def line_with(*parts: str) -> str:
        found = [line for line in lines if all(p in line for p in parts)]
        assert found, (parts, text)
        return found[0]

    assert "260.0" in line_with("2,500", "250.0", "260.0")  # hopper-mbpo at 2,500: mean and IQM 260.0
    assert "72.5" in line_with("2,500", "72.5")
    assert "reaches threshold 260.0 (final IQM of sac-seeds) and stays at or above it" in " ".join(text.split())
    row = line_with("hopper-mbpo", "2,500 ", "3/3")
    assert "4.00x" in row and "0.576" in row
    row = line_with("sac-seeds", "10,000", "2/3")
    assert "1.00x (baseline)" in row and "0.121" in row
    row = line_with("hopper-mbpo", "1m 40s", "5,000")  # 100 s of wall time at 50 steps/s
    assert "50.0" in row and row.rstrip(" │").endswith("50.0 s")  # ~wall to threshold: 2,500 steps at 50/s
    assert line_with("sac-seeds", "20.0 s", "10,000", "500.0").rstrip(" │").endswith("20.0 s")
    assert "1.00" in line_with("hopper-mbpo", "510.0")  # P(better than baseline)
    assert "(baseline)" in line_with("sac-seeds", "260.0", "10,000")
    assert "0 = 25.0 and 1 = 520.0" in text
    assert "steps: env steps count every real step, the random exploration steps (train.init_steps) included" in text
    # the terminal plot under the tables
    assert "* hopper-mbpo  o sac-seeds" in text
    assert text.rstrip().endswith("* hopper-mbpo  o sac-seeds")


def test_same_input_same_output(synthetic: Synthetic) -> None:
    args = ["compare", *synthetic.mbpo_ids, "sac-seeds", "--format", "json"]
    assert mbpo(synthetic.runs_dir, *args).stdout == mbpo(synthetic.runs_dir, *args).stdout
    table = ["compare", "sac-seeds", *synthetic.mbpo_ids]
    assert mbpo(synthetic.runs_dir, *table).stdout == mbpo(synthetic.runs_dir, *table).stdout


def test_csv_long_format(synthetic: Synthetic) -> None:
    result = mbpo(synthetic.runs_dir, "compare", *synthetic.mbpo_ids, "sac-seeds", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["run_id", "group", "seed", "step", "return"]
    assert len(rows) == 1 + 3 * len(MBPO_STEPS) + 3 * len(SAC_STEPS)
    assert rows[1] == [synthetic.mbpo[0].id, "hopper-mbpo", "0", "1000", "100.0"]
    sac_seed2 = [r for r in rows[1:] if r[0] == synthetic.sac[2].id]
    assert [(int(r[3]), float(r[4])) for r in sac_seed2] == [(s, sac_return(s, 2)) for s in SAC_STEPS]
    assert {r[1] for r in sac_seed2} == {"sac-seeds"}


def test_plot_writes_a_valid_png(synthetic: Synthetic, tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    result = mbpo(synthetic.runs_dir, "compare", "sac-seeds", *synthetic.mbpo_ids, "--plot", str(path))
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert f"wrote {path}" in result.stdout.replace("\n", "")


# ---------------------------------------------------------------------------------------------
# Groups, baselines and thresholds
# ---------------------------------------------------------------------------------------------


def test_grouping_by_config(synthetic: Synthetic) -> None:
    with Registry.open(synthetic.runs_dir) as registry:
        runs = resolve_refs(registry, [synthetic.other.id, *synthetic.mbpo_ids, "sac-seeds"])
    groups = group_runs(runs)
    # seed, device and threads may differ within a group; rollout.batch_size may not
    assert [g.name for g in groups] == ["hopper-mbpo[batch_size=50000]", "hopper-mbpo[batch_size=100000]",
                                        "sac-seeds"]
    assert [g.seeds for g in groups] == [[0], [0, 1, 2], [0, 1, 2]]
    assert [r.id for r in groups[1].runs] == synthetic.mbpo_ids


def test_ungrouped_runs_beside_a_registry_group_are_named_by_their_difference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the seeds of an ablation's control, and runs trained later with one key changed and no registry group
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    with Registry.open(tmp_path / "runs") as registry:
        registry.ensure_group("hopper-ablation", "ablation")
        control = [add_run(registry, "mbpo", s, MBPO_STEPS, [mbpo_return(t, s) for t in MBPO_STEPS], 100.0,
                           group="hopper-ablation") for s in range(2)]
        changed = [add_run(registry, "mbpo", s, MBPO_STEPS, [mbpo_return(t, s) for t in MBPO_STEPS], 100.0,
                           batch_size=50_000) for s in range(2)]
        sac = [add_run(registry, "sac", s, SAC_STEPS, [sac_return(t, s) for t in SAC_STEPS], 20.0) for s in range(2)]
    groups = group_runs([*control, *changed, *sac])
    assert [g.name for g in groups] == ["hopper-ablation", "hopper-mbpo[batch_size=50000]", "hopper-sac"]


def test_one_seed_group_has_no_interval(synthetic: Synthetic) -> None:
    result = mbpo(synthetic.runs_dir, "compare", synthetic.other.id, *synthetic.mbpo_ids, "sac-seeds")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "n/a (1 seed)" in line]
    assert lines and "hopper-mbpo[batch_size=50000]" in lines[0]
    data = compare_json(synthetic, synthetic.other.id, *synthetic.mbpo_ids, "sac-seeds")
    row = next(r for r in data["returns"] if r["group"] == "hopper-mbpo[batch_size=50000]" and r["step"] == 2500)  # 125
    assert (row["n_seeds"], row["iqm"], row["ci_low"], row["ci_high"]) == (1, pytest.approx(125.0), None, None)


def test_threshold_never_reached(synthetic: Synthetic) -> None:
    result = mbpo(synthetic.runs_dir, "compare", *synthetic.mbpo_ids, "sac-seeds", "--threshold", "1000")
    assert result.exit_code == 0, result.output
    assert "below it at 5,000" in result.stdout
    assert "below it at 10,000" in result.stdout
    data = compare_json(synthetic, *synthetic.mbpo_ids, "sac-seeds", "--threshold", "1000")
    assert data["threshold_source"] == "--threshold"
    for row in data["efficiency"]:
        assert (row["steps"], row["ratio"], row["seeds_reaching"]) == (None, None, 0)


def test_baseline_never_reaches_gives_a_lower_bound(synthetic: Synthetic) -> None:
    data = compare_json(synthetic, *synthetic.mbpo_ids, "sac-seeds", "--threshold", "400")
    row = by_group(data["efficiency"], "hopper-mbpo")
    assert row["steps"] == pytest.approx(3900.0)  # step / 10 + 10 = 400
    assert row["ratio"] == pytest.approx(10_000 / 3900) and row["ratio_is_lower_bound"] is True
    result = mbpo(synthetic.runs_dir, "compare", *synthetic.mbpo_ids, "sac-seeds", "--threshold", "400")
    assert "> 2.56x" in result.stdout


def test_a_noisy_early_peak_of_the_baseline_does_not_invert_the_ratio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One seed per side, as reported: SAC peaks early by chance (150 at 2,000), falls back, ends at 93.6; MBPO
    # passes 93.6 later than SAC's first crossing but stays above it and ends at 1,000. Counting SAC's first
    # crossing (1,597) against MBPO's (2,174) said MBPO needed 0.73x "fewer" steps.
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    runs_dir = tmp_path / "runs"
    with Registry.open(runs_dir) as registry:
        sac = add_run(registry, "sac", 0, MBPO_STEPS, [10.0, 150.0, 30.0, 60.0, 93.6], 20.0)
        mbpo_run = add_run(registry, "mbpo", 0, MBPO_STEPS, [10.0, 50.0, 300.0, 1000.0, 1000.0], 100.0)
    result = mbpo(runs_dir, "compare", mbpo_run.id, sac.id, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["threshold_source"] == "baseline final IQM"
    assert "stays at or above the threshold" in data["threshold_rule"]
    eff_sac, eff_mbpo = by_group(data["efficiency"], "hopper-sac"), by_group(data["efficiency"], "hopper-mbpo")
    assert eff_mbpo["threshold"] == pytest.approx(93.6)
    assert eff_sac["steps"] == pytest.approx(5000.0)  # SAC holds 93.6 only from its last eval
    assert eff_mbpo["steps"] == pytest.approx(2000 + 43.6 / 250 * 1000)
    assert eff_mbpo["ratio"] == pytest.approx(5000.0 / eff_mbpo["steps"])
    assert eff_mbpo["ratio"] > 1.0
    table = mbpo(runs_dir, "compare", mbpo_run.id, sac.id)
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())  # the headline may wrap
    assert ("Sample efficiency: env steps until the IQM curve reaches threshold 93.6 (final IQM of hopper-sac) "
            "and stays at or above it") in text
    assert "2.30x" in text
    assert data["threshold_rule"] in text


def test_without_sac_there_is_no_baseline(synthetic: Synthetic) -> None:
    data = compare_json(synthetic, *synthetic.mbpo_ids)
    assert data["baselines"] == {"Hopper-v5": None}
    assert any("no baseline for Hopper-v5" in note for note in data["notes"])
    row = data["efficiency"][0]
    assert (row["threshold"], row["steps"], row["ratio"]) == (None, None, None)
    result = mbpo(synthetic.runs_dir, "compare", *synthetic.mbpo_ids)
    assert result.exit_code == 0, result.output
    assert "n/a (no baseline)" in result.stdout and "note: no baseline for Hopper-v5" in result.stdout


def test_explicit_baseline_and_milestones(synthetic: Synthetic) -> None:
    # the single-seed variant as the baseline: its final return at 5,000 is 250
    data = compare_json(synthetic, *synthetic.mbpo_ids, "--baseline", synthetic.other.name, "--at", "2k,4000")
    assert data["milestones"] == [2000, 4000]
    assert data["baselines"] == {"Hopper-v5": "hopper-mbpo[batch_size=50000]"}
    row = by_group(data["efficiency"], "hopper-mbpo[batch_size=100000]")
    assert row["steps"] == pytest.approx(2400.0)  # step / 10 + 10 = 250
    assert row["ratio"] == pytest.approx(5000 / 2400)


def test_report_is_a_pure_function(synthetic: Synthetic) -> None:
    with Registry.open(synthetic.runs_dir) as registry:
        runs = resolve_refs(registry, ["sac-seeds", *synthetic.mbpo_ids])
        curves = load_curves(registry, runs)
    first, second = build_report(runs, curves), build_report(runs, curves)
    assert first == second
    assert [g.name for g in first.groups] == ["sac-seeds", "hopper-mbpo"]


def test_parse_steps() -> None:
    assert parse_steps("25000, 50k,1e5,2_000") == [25000, 50000, 100000, 2000]


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "nope"], "no run or group 'nope'"),
        (["compare", "sac-seeds", "--baseline", "nope"], "no run or group 'nope'"),
        (["compare", "sac-seeds", "--format", "xml"], "--format"),
        (["compare", "sac-seeds", "--plot", "curves.jpg"], "--plot"),
        (["compare", "sac-seeds", "--at", "soon"], "--at"),
        (["compare", "sac-seeds", "--at", "0"], "--at"),
    ],
)
def test_bad_input_is_one_line_exit_2(synthetic: Synthetic, args: list[str], message: str) -> None:
    assert message in one_error_line(mbpo(synthetic.runs_dir, *args))


def test_unknown_run_without_a_registry(tmp_path: Path) -> None:
    assert "no run 'abcd1234'" in one_error_line(mbpo(tmp_path / "runs", "compare", "abcd1234"))
    assert not (tmp_path / "runs").exists()
