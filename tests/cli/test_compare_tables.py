"""`mbpo compare` at 80 columns: numbers never cut, an ablation's groups shown by their variant alone.

Runs are written straight into a registry (no training), as an ablation group of three variants.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelpers import mbpo
from rich.console import Console

from mbpo_cli.cli import common
from mbpo_cli.cli.compare_tables import short_group_names
from mbpo_cli.cli.fit import Col, Fit, fit_widths, shorten
from mbpo_cli.runs.registry import Registry

GROUP = "hopper-ablation-rollout-length-98c1a1"
VARIANTS = {"control": 0.03, "no-model-rollouts-at-all": 0.01, "rollout-length-fixed-at-one": 0.02}
"""Variant -> return per env step."""


@pytest.fixture
def ablation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three variants x two seeds of 125,000 steps in one ablation group; stdout 80 columns wide."""
    monkeypatch.setattr(common, "out", Console(width=80))
    with Registry.open(tmp_path) as registry:
        registry.ensure_group(GROUP, "ablation")
        for variant, per_step in VARIANTS.items():
            for seed in (0, 1):
                config = {"env": {"id": "Hopper-v5", "kwargs": {}, "termination": "auto"}, "algo": "mbpo",
                          "train": {"seed": seed, "device": "cpu", "threads": 1}, "variant": variant}
                run = registry.create_run(name=f"{GROUP}-{variant}-s{seed}", preset="hopper", env_id="Hopper-v5",
                                          algo="mbpo", seed=seed, config=config, device="cpu", command="test",
                                          target_steps=125_000, group=GROUP, variant=variant)
                registry.log_metrics(run.id, [(s, "eval_return", s * per_step * (1 + seed / 10))
                                              for s in range(5000, 125_001, 5000)])
                registry.heartbeat(run.id, env_steps=125_000, wall_seconds=12_345.0)
                registry.set_status(run.id, "finished")
    return tmp_path


def _numbers(report: dict) -> set[str]:
    """The numbers of the report as the tables show them (CI bounds on their own)."""
    shown = set()
    for row in report["returns"]:
        shown |= {f"{row['step']:,}", f"{row['mean']:,.1f}", f"{row['iqm']:,.1f}", f"[{row['ci_low']:,.1f},",
                  f"{row['ci_high']:,.1f}]"}
    for row in report["final"]:
        shown |= {f"{row['step']:,}", f"{row['iqm']:,.1f}", f"[{row['ci_low']:,.1f},", f"{row['ci_high']:,.1f}]"}
    for row in report["efficiency"]:
        shown.add(f"{row['auc']:.3f}")
    return shown


def test_compare_on_an_ablation_at_80_columns(ablation: Path) -> None:
    """Group names ran over 4 lines and '(baselin…' was cut: the variants are shown alone, each on one line,
    and every number and every word of the tables is whole."""
    control = f"{GROUP}-control-s0"
    result = mbpo(ablation, "compare", GROUP, "--baseline", control)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80, text
    tables = text.split("norm. AUC:")[0]
    words = set(tables.replace("│", " ").split())
    report = json.loads(mbpo(ablation, "compare", GROUP, "--baseline", control, "--format", "json").stdout)
    for value in [*VARIANTS, *_numbers(report), "(baseline)", "1.00x"]:
        assert value in words, (value, text)
    lines = tables.splitlines()
    assert sum(GROUP in line for line in lines) == 1  # said once, under the first table
    assert f"groups of ablation {GROUP}" in " ".join(tables.split())
    assert "* control  o no-model-rollouts-at-all  + rollout-length-fixed-at-one" in text  # the text plot's legend


def test_group_names_lose_the_ablation_only_when_they_stay_distinct() -> None:
    assert short_group_names([f"{GROUP}/control", f"{GROUP}/wide", "hopper-sac"]) == (
        {f"{GROUP}/control": "control", f"{GROUP}/wide": "wide", "hopper-sac": "hopper-sac"}, GROUP)
    assert short_group_names([f"{GROUP}/control", "control"]) == ({}, None)
    assert short_group_names(["a/control", "b/control"]) == ({}, None)
    assert short_group_names(["hopper-mbpo", "hopper-sac"]) == ({}, None)


def test_names_are_shortened_in_the_middle_and_give_way_first() -> None:
    assert shorten("invertedpendulum-v5-model_free-s1-d47066cd", 20) == "invertedp…1-d47066cd"
    assert shorten("short", 20) == "short"
    assert [shorten("abcdef", n) for n in (0, 1, 2, 3)] == ["", "…", "…f", "a…f"]
    columns = [Col("name", Fit.NAME, keep=6), Col("seeds reaching"), Col("steps to threshold", Fit.WRAP),
               Col("last eval")]
    rows = [["a-rather-long-name", "2/3", "not reached by 125,000", "-12,345.6"]]
    # names give way down to their keep, then headers of whole values wrap, then text, then names shrink further;
    # whole values never (the table is then wider than asked)
    assert fit_widths(columns, rows, 63) == [18, 14, 22, 9]
    assert fit_widths(columns, rows, 60) == [15, 14, 22, 9]
    assert fit_widths(columns, rows, 45) == [6, 8, 22, 9]
    assert fit_widths(columns, rows, 35) == [6, 8, 12, 9]
    assert fit_widths(columns, rows, 30) == [4, 8, 9, 9]
    assert fit_widths(columns, rows, 20) == [1, 8, 9, 9]


def test_compare_with_a_published_curve_at_80_columns(ablation: Path) -> None:
    """Two more columns (the published mean [low, high], seeds in range) still fit 80 columns with every number
    whole (the bundled curve reaches 125,000: a value at every milestone)."""
    control = f"{GROUP}-control-s0"
    args = ("compare", GROUP, "--baseline", control, "--reference", "mbpo-hopper")
    result = mbpo(ablation, *args)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80, text
    data = json.loads(mbpo(ablation, *args, "--format", "json").stdout)
    tables = text.split("norm. AUC:")[0]
    for number in _numbers(data):
        assert number in tables, (number, tables)
    shown = data["returns"]
    assert all(row["reference"]["mean"] is not None for row in shown)
    assert any(row["step"] == 125_000 and row["reference"]["mean"] == 3279.8 for row in shown)
    for row in shown:
        point = row["reference"]
        for value in (f"{point['mean']:,.1f}", f"[{point['low']:,.1f},", f"{point['high']:,.1f}]",
                      f"{point['seeds_inside']}/{point['n_seeds']}"):
            assert value in tables, (value, tables)
