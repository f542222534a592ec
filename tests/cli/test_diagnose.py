"""`mbpo diagnose`, the diagnostics in `runs show`, and `compare --model-return`, on registry rows made without
training (the engine's recording is tested in tests/engine/test_diagnostics.py)."""

import json
from pathlib import Path

from clihelpers import mbpo, one_error_line

from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.reports.compare import config_signature
from mbpo_cli.runs.registry import Registry

OPEN_LOOP = {1000: [0.01, 0.05, 0.2], 2000: [0.005, 0.02, 0.1]}


def _run(runs_dir: Path, seed: int = 0, algo: str = "mbpo", diagnostics: bool = True) -> str:
    config = resolve_config(preset="inverted_pendulum", seed=seed, algo=algo)
    with Registry.open(runs_dir) as registry:
        run = registry.create_run(name=f"ip-{algo}-{seed}", preset="inverted_pendulum", env_id="InvertedPendulum-v5",
                                  algo=algo, seed=seed, config=config.to_dict(), device="cpu", command="mbpo train",
                                  target_steps=2000)
        rows: list[tuple[int, str, float]] = [(500, "eval_return", 20.0)]
        for step, errors in OPEN_LOOP.items():
            rows += [(step, "eval_return", step / 2 + seed)]
            if diagnostics:
                rows += [(step, "diag_model_error", errors[0] / 2), (step, "diag_model_return", step / 4 + seed),
                         (step, "diag_disagreement", 3.0),
                         (step, "diag_reward_error", 0.5)]
                rows += [(step, f"diag_open_loop_h{h}", e) for h, e in enumerate(errors, start=1)]
        if diagnostics and algo == "mbpo":
            rows += [(750, "rollout_length_mean", 4.5), (750, "rollout_length_p10", 1.0),
                     (750, "rollout_length_p90", 9.0), (750, "rollout_threshold", 2.5),
                     (750, "rollout_stopped_uncertain", 0.25)]
        registry.log_metrics(run.id, [r for r in rows if algo == "mbpo" or not r[1].startswith("diag_")])
        registry.set_status(run.id, "finished")
    return run.id


def test_diagnose_prints_every_epoch_and_the_adaptive_rollouts(tmp_path: Path) -> None:
    run_id = _run(tmp_path)
    result = mbpo(tmp_path, "diagnose", run_id)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith(("1,000", "2,000"))]
    # env step, real return, model return, one-step error, disagreement, open-loop at h = 1 (also H // 2) and 3 (H)
    assert rows[0] == ["1,000", "500.0", "250.0", "0.005", "3", "0.01", "0.2"]
    assert rows[1][:3] == ["2,000", "1,000.0", "500.0"] and rows[1][-1] == "0.1"
    assert "Adaptive rollouts" in result.stdout and "25%" in result.stdout
    data = json.loads(mbpo(tmp_path, "diagnose", run_id, "--json").stdout)
    assert [e["open_loop"] for e in data["epochs"]] == list(OPEN_LOOP.values())
    assert data["rollouts"] == [{"step": 750, "rollout_length_mean": 4.5, "rollout_length_p10": 1.0,
                                 "rollout_length_p90": 9.0, "rollout_threshold": 2.5,
                                 "rollout_stopped_uncertain": 0.25}]


def test_diagnose_plot_writes_a_figure(tmp_path: Path) -> None:
    run_id = _run(tmp_path)
    figure = tmp_path / "diag.png"
    result = mbpo(tmp_path, "diagnose", run_id, "--plot", str(figure))
    assert result.exit_code == 0, result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    line = one_error_line(mbpo(tmp_path, "diagnose", run_id, "--plot", str(tmp_path / "diag.jpg")))
    assert line == f"error: --plot: the file must end in .png or .svg, got '{tmp_path / 'diag.jpg'}'"


def test_diagnose_says_why_a_run_has_none(tmp_path: Path) -> None:
    free = _run(tmp_path, algo="model_free")
    assert one_error_line(mbpo(tmp_path, "diagnose", free)) == \
        f"error: run {free} has no model diagnostics: it trains no model"
    off = _run(tmp_path, seed=1, diagnostics=False)
    assert "none was recorded (diagnostics.enabled false" in one_error_line(mbpo(tmp_path, "diagnose", off))


def test_runs_show_lists_the_diagnostics(tmp_path: Path) -> None:
    run_id = _run(tmp_path)
    result = mbpo(tmp_path, "runs", "show", run_id, "--brief")
    assert result.exit_code == 0, result.output
    assert "Model diagnostics" in result.stdout and "1-step" in result.stdout and "disagree" in result.stdout
    data = json.loads(mbpo(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert [e["step"] for e in data["diagnostics"]["epochs"]] == [1000, 2000]
    assert data["diagnostics"]["rollouts"][0]["rollout_threshold"] == 2.5


def test_compare_overlays_model_returns(tmp_path: Path) -> None:
    ids = [_run(tmp_path, seed=s) for s in (0, 1)] + [_run(tmp_path, seed=s, algo="model_free") for s in (0, 1)]
    figure = tmp_path / "compare.png"
    result = mbpo(tmp_path, "compare", *ids, "--plot", str(figure), "--model-return")
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 20_000 and "warning" not in result.stderr
    free_only = mbpo(tmp_path, "compare", *ids[2:], "--plot", str(figure), "--model-return", "--overwrite")
    assert free_only.exit_code == 0 and "no compared group recorded model returns" in free_only.stderr
    line = one_error_line(mbpo(tmp_path, "compare", *ids, "--model-return"))
    assert line == "error: --model-return draws on the figure: add --plot FILE.png"


def test_runs_recorded_before_diagnostics_group_with_new_ones() -> None:
    new = resolve_config(preset="inverted_pendulum").to_dict()
    old = {k: v for k, v in new.items() if k != "diagnostics"}
    old["rollout"] = {k: v for k, v in new["rollout"].items() if not k.startswith("adaptive")}
    assert config_signature(old) == config_signature(new)
    adaptive = {**new, "rollout": {**new["rollout"], "adaptive": True}}
    assert config_signature(adaptive) != config_signature(new)
