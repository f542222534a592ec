"""`mbpo compare --reference`: a published curve beside the returns at milestones, on a synthetic registry.

The group hopper-mbpo has four seeds, evals every 1,000 steps to 5,000: return = step / 10 + 10 * seed. The
reference file has two rows, (2,000: mean 200, range [190, 210]) and (4,000: mean 400, range [395, 420]), so by hand:

* at 1,000 and 5,000 (outside its steps, never extrapolated): no reference value;
* at 3,000 (halfway): mean 300, range [292.5, 315]; the seeds' returns 300, 310, 320, 330: 2 inside;
* at 4,000 (on a step): mean 400, range [395, 420]; returns 400, 410, 420, 430: 3 inside (the range's
  ends count as inside).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from clihelpers import mbpo, one_error_line
from plothelpers import drawn_figures
from rich.console import Console

from mbpo_cli.cli import common
from mbpo_cli.reports import plots
from mbpo_cli.reports.reference import bundled_names, load_reference, parse_reference
from mbpo_cli.reports.refs import ReportError
from mbpo_cli.runs.registry import Registry

if TYPE_CHECKING:
    pass

STEPS = [1000, 2000, 3000, 4000, 5000]
REFERENCE = "# label: Paper MBPO\n# from a made-up paper\nstep,mean,low,high\n2000,200,190,210\n4000,400,395,420\n"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reference") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MBPO_REGISTRY_URL", raising=False)
        with Registry.open(folder) as registry:
            registry.ensure_group("hopper-mbpo", "seeds")
            for seed in range(4):
                config = {"env": {"id": "Hopper-v5", "kwargs": {}, "termination": "auto"}, "algo": "mbpo",
                          "train": {"seed": seed, "device": "cpu", "threads": 1, "steps": 5000}}
                run = registry.create_run(name=f"hopper-mbpo-s{seed}", preset="hopper", env_id="Hopper-v5",
                                          algo="mbpo", seed=seed, config=config, device="cpu", command="test",
                                          target_steps=5000, group="hopper-mbpo")
                registry.log_metrics(run.id, [(s, "eval_return", s / 10 + 10 * seed) for s in STEPS])
                registry.heartbeat(run.id, env_steps=5000, wall_seconds=100.0)
                registry.set_status(run.id, "finished")
    return folder


@pytest.fixture
def reference_file(tmp_path: Path) -> Path:
    path = tmp_path / "paper.csv"
    path.write_text(REFERENCE)
    return path


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(width=250))


def compare(runs_dir: Path, *args: str) -> dict:
    result = mbpo(runs_dir, "compare", "hopper-mbpo", "--at", "1000,3000,4000,5000", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------------------------


def test_interpolation_between_steps_and_never_outside() -> None:
    curve = parse_reference(REFERENCE, "paper.csv", default_label="paper")
    assert curve.label == "Paper MBPO"
    assert curve.at(3000) == pytest.approx((300.0, 292.5, 315.0))
    assert curve.at(2500) == pytest.approx((250.0, 241.25, 262.5))
    assert curve.at(4000) == pytest.approx((400.0, 395.0, 420.0))
    assert curve.at(1999) is None
    assert curve.at(4001) is None


def test_json_holds_the_reference_and_seeds_inside_per_milestone(runs_dir: Path, reference_file: Path) -> None:
    data = compare(runs_dir, "--reference", str(reference_file))
    assert data["reference"]["label"] == "Paper MBPO"
    assert data["reference"]["source"] == str(reference_file)
    points = {row["step"]: row["reference"] for row in data["returns"]}
    assert points[3000] == pytest.approx({"mean": 300.0, "low": 292.5, "high": 315.0, "seeds_inside": 2,
                                          "n_seeds": 4})
    assert points[4000] == {"mean": 400.0, "low": 395.0, "high": 420.0, "seeds_inside": 3, "n_seeds": 4}
    for outside in (1000, 5000):
        assert points[outside] == {"mean": None, "low": None, "high": None, "seeds_inside": None, "n_seeds": 4}


def test_without_a_reference_the_json_is_as_before(runs_dir: Path) -> None:
    data = compare(runs_dir)
    assert "reference" not in data
    assert all("reference" not in row for row in data["returns"])


def test_csv_is_unchanged_by_a_reference(runs_dir: Path, reference_file: Path) -> None:
    plain = mbpo(runs_dir, "compare", "hopper-mbpo", "--format", "csv")
    with_reference = mbpo(runs_dir, "compare", "hopper-mbpo", "--format", "csv", "--reference", str(reference_file))
    assert with_reference.exit_code == 0, with_reference.output
    assert with_reference.stdout == plain.stdout


def test_table_shows_the_published_range_and_seeds_inside(runs_dir: Path, reference_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(width=80))
    result = mbpo(runs_dir, "compare", "hopper-mbpo", "--at", "1000,3000,4000,5000", "--reference",
                  str(reference_file))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80, text
    table = text.split("Sample efficiency")[0]
    lines = {step: next(line for line in table.splitlines() if f" {step} " in line)
             for step in ("1,000", "3,000", "4,000", "5,000")}
    assert "2/4 in" in lines["3,000"] and "300.0" in lines["3,000"] and "[292.5," in table and "315.0]" in table
    assert "3/4 in" in lines["4,000"] and "400.0" in lines["4,000"] and "[395.0," in table and "420.0]" in table
    assert "/4 in" not in lines["1,000"] and "/4 in" not in lines["5,000"]
    assert table.count("/4 in") == 2
    assert "published: Paper MBPO" in text


# ---------------------------------------------------------------------------------------------
# The plot
# ---------------------------------------------------------------------------------------------



def test_plot_draws_the_reference_mean_dashed_and_its_range_as_a_band(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    figures = drawn_figures(monkeypatch)
    grid = np.array([1000.0, 2000.0, 3000.0])
    groups = {"mbpo": (grid, np.stack([grid / 10, grid / 10 + 10]))}
    curve = parse_reference("step,mean,low,high\n0,0,-10,10\n2000,200,150,250\n8000,800,700,900\n", "r.csv", "r")
    plots.plot_curves(groups, tmp_path / "c.png", None, "t", reference=curve)
    (ax,) = figures[0].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    mean = lines["r: mean"]
    assert mean.get_linestyle() == "--"
    # up to the groups' last step (3,000, interpolated there), not the reference's 8,000
    assert np.array_equal(mean.get_xdata(), [0.0, 2000.0, 3000.0])
    assert np.allclose(mean.get_ydata(), [0.0, 200.0, 300.0])
    bands = [c for c in ax.collections if c.get_label() == "r: range"]
    assert len(bands) == 1
    x, y = bands[0].get_paths()[0].vertices.T
    assert x.min() == 0.0 and x.max() == 3000.0
    assert y.min() == pytest.approx(-10.0) and y.max() == pytest.approx(250.0 + (900 - 250) / 6)
    assert "r: mean" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_compare_plot_carries_the_reference(runs_dir: Path, reference_file: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    figures = drawn_figures(monkeypatch)
    result = mbpo(runs_dir, "compare", "hopper-mbpo", "--reference", str(reference_file), "--plot",
                  str(tmp_path / "repro.png"))
    assert result.exit_code == 0, result.output
    (ax,) = figures[0].axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert "Paper MBPO: mean" in labels
    assert [c for c in ax.collections if c.get_label() == "Paper MBPO: range"]


# ---------------------------------------------------------------------------------------------
# Refusals: one line, exit 2
# ---------------------------------------------------------------------------------------------


def test_wall_axis_refuses_a_reference(runs_dir: Path, reference_file: Path) -> None:
    result = mbpo(runs_dir, "compare", "hopper-mbpo", "--x", "wall", "--reference", str(reference_file))
    line = one_error_line(result)
    assert "--reference" in line and "--x wall" in line


@pytest.mark.parametrize(("content", "expected"), [
    ("step,mean,lo,high\n1000,1,0,2\n", "line 1: expected the header step,mean,low,high"),
    ("# source\nstep,mean,low,high\n1000,1,0,2\n2000,x,0,2\n", "line 4: mean is not a number"),
    ("step,mean,low,high\n1000,1,0,2\n1000,1,0,2\n", "line 3: steps must increase"),
    ("step,mean,low,high\n2000,1,0,2\n1000,1,0,2\n", "line 3: steps must increase"),
    ("step,mean,low,high\n1000,1,3,2\n", "line 2: low 3 is above high 2"),
    ("step,mean,low,high\n1000,1,0\n", "line 2: expected 4 values"),
    ("step,mean,low,high\n1000,nan,0,2\n", "line 2: mean is not finite"),
    ("# only comments\n", "no header row"),
    ("step,mean,low,high\n", "no rows after the header"),
])
def test_bad_reference_files_give_one_line_naming_file_and_line(runs_dir: Path, tmp_path: Path, content: str,
                                                                expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    line = one_error_line(mbpo(runs_dir, "compare", "hopper-mbpo", "--reference", str(path)))
    assert f"{path}" in line and expected in line, line


def test_missing_and_unreadable_reference_files(runs_dir: Path, tmp_path: Path) -> None:
    missing = one_error_line(mbpo(runs_dir, "compare", "hopper-mbpo", "--reference", str(tmp_path / "nope.csv")))
    assert "nope.csv" in missing and "no such file" in missing
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00step")
    unreadable = one_error_line(mbpo(runs_dir, "compare", "hopper-mbpo", "--reference", str(binary)))
    assert "binary.csv" in unreadable and "cannot read" in unreadable


# ---------------------------------------------------------------------------------------------
# The bundled curves
# ---------------------------------------------------------------------------------------------

PUBLISHED = {
    ("mbpo-hopper", 10_000): (329.0, 92.6, 565.3),
    ("dhmbpo-hopper", 30_000): (3171.2, 2262.3, 3495.2),
    ("sac-halfcheetah", 20_000): (4046.6, 3607.1, 5018.7),
    ("macura-walker2d", 50_000): (1032.4, 313.4, 2081.8),
    ("dhmbpo-humanoid", 100_000): (5185.7, 1471.5, 6388.8),
}
"""Rows of issue 26's published-curves.csv (mean, min, max at a step), from the public result CSVs of 4kubo/erl_lib."""


def test_every_bundled_curve_parses_and_names_its_source() -> None:
    names = bundled_names()
    algos, tasks = ("mbpo", "dhmbpo", "sac", "macura"), ("hopper", "halfcheetah", "walker2d", "ant", "humanoid")
    assert names == sorted(f"{a}-{t}" for a in algos for t in tasks)
    for name in names:
        curve = load_reference(name)
        assert curve.source == name
        assert "4kubo/erl_lib" in curve.label
        assert curve.steps[0] == 5000 and np.all(curve.steps % 5000 == 0), name
        assert curve.steps.size >= 25, name


def test_bundled_curves_match_the_published_numbers() -> None:
    for (name, step), expected in PUBLISHED.items():
        assert load_reference(name).at(step) == pytest.approx(expected), name


def test_a_bundled_name_resolves_on_the_command_line(runs_dir: Path) -> None:
    data = compare(runs_dir, "--reference", "mbpo-hopper")
    assert data["reference"]["source"] == "mbpo-hopper"
    points = {row["step"]: row["reference"] for row in data["returns"]}
    assert points[1000]["mean"] is None  # before its first step, 5,000
    assert points[5000]["mean"] == pytest.approx(166.6)
    assert points[5000]["low"] == pytest.approx(34.0) and points[5000]["high"] == pytest.approx(299.1)
    # returns at 5,000: 500, 510, 520, 530: all above 299.1
    assert points[5000]["seeds_inside"] == 0


def test_load_reference_rejects_an_unknown_name() -> None:
    with pytest.raises(ReportError, match="no such file, nor a bundled curve"):
        load_reference("mbpo-pogo")


def test_help_lists_the_bundled_names() -> None:
    result = mbpo(Path("unused"), "compare", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.replace("│", " ").split())
    listing = text.split("Bundled --reference curves")[1].split("Arguments")[0]
    for name in bundled_names():
        algo, task = name.split("-")
        assert f" {algo}," in listing or f" {algo};" in listing, (algo, listing)
        assert f" {task}," in listing or f" {task} " in listing, (task, listing)
