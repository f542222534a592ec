"""`mbpo bench` times every component and reports the documented JSON keys."""

import json

import pytest
import torch
from typer.testing import CliRunner

from mbpo_cli.bench import timing
from mbpo_cli.cli.app import app


def test_bench_json_has_the_documented_keys(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--preset", "inverted_pendulum",
                                      "--steps", "5", "--samples", "300", "--repeats", "2", "--json",
                                      "--set", "model.max_epochs=3", "--set", "rollout.batch_size=2000"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("device", "floor_gflops", "floor_threads", "sac_update_ms", "model_train_step_ms", "rollout_step_ms",
                "env_step_ms", "env_steps_per_s", "model_retrain_ms", "eval_episode_ms"):
        assert key in data, key
    assert data["device"] == "cpu"
    assert data["update_mode"].startswith("eager")
    assert all(data[k] > 0 for k in ("sac_update_ms", "model_train_step_ms", "rollout_step_ms", "env_step_ms"))
    assert set(data["end_to_end_phase_seconds"]) >= {"env", "model", "rollout", "agent"}
    assert data["rollout_step_ms"] < 60_000
    assert not (tmp_path / "registry.db").exists()


def test_bench_rejects_bad_numbers(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--steps", "0"])
    assert result.exit_code == 2
    assert "must be positive" in result.stderr


def test_bench_times_the_presets_agent(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--preset", "cartpole", "--steps", "5",
                                      "--samples", "300", "--repeats", "2", "--json", "--set", "model.max_epochs=3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dqn_update_ms"] > 0 and "sac_update_ms" not in data
    assert data["update_mode"].startswith("eager")


def test_bench_says_what_it_is_timing_as_it_goes() -> None:
    """`mbpo bench` printed nothing for minutes: every component and every end-to-end step is now reported."""
    from mbpo_cli.bench.components import bench_components
    from mbpo_cli.bench.end_to_end import bench_end_to_end
    from mbpo_cli.config.resolve import resolve_config

    config = resolve_config(preset="inverted_pendulum", device="cpu",
                            overrides=["model.max_epochs=3", "rollout.batch_size=2000", "train.init_steps=50"])
    told: list[tuple[str, int, int]] = []
    bench_components(config, 300, 2, lambda what, done, total: told.append((what, done, total)))
    assert [done for _, done, _ in told] == list(range(8)) and {total for _, _, total in told} == {7}
    assert [what.split()[1] for what, _, _ in told[1:7]] == [
        "sac_update", "model_train_step", "model_retrain", "rollout_step", "env_step", "eval_episode"]
    told.clear()
    bench_end_to_end(config, 5, lambda what, done, total: told.append((what, done, total)))
    exploring = [(done, total) for what, done, total in told if "exploration" in what]
    timed = [(done, total) for what, done, total in told if what.startswith("end to end: timed")]
    assert exploring[-1] == (50, 50) and timed == [(n, 5) for n in range(1, 6)]


def test_bench_starts_the_segment_later_with_a_model_as_old_as_a_runs() -> None:
    """`--at N` (the cost growth with the data): random exploration up to N, one untimed retrain and rollout
    `train_freq` steps before it, then every timed retrain reported with its step, seconds and epochs, and the
    rollout length of the schedule's epoch at N."""
    from mbpo_cli.bench.end_to_end import bench_end_to_end
    from mbpo_cli.config.resolve import resolve_config

    config = resolve_config(preset="inverted_pendulum", device="cpu",
                            overrides=["model.max_epochs=3", "rollout.batch_size=500", "train.init_steps=50",
                                       "rollout.train_freq=25", "train.epoch_length=25",
                                       "rollout.schedule=[0,10,1,11]"])
    told: list[tuple[str, int, int]] = []
    segment = bench_end_to_end(config, 60, lambda what, done, total: told.append((what, done, total)), 150)
    assert segment.start == 150
    assert [r.env_step for r in segment.retrains] == [150, 175, 200]
    assert all(r.seconds > 0 and 1 <= r.epochs <= 3 for r in segment.retrains)
    assert [r.rollout_length for r in segment.retrains] == [5, 6, 7]
    assert any("untimed model retrain and rollout at step 125" in what for what, _, _ in told)
    assert segment.phases["model"] > 0 and segment.phases["agent"] > 0
    first = bench_end_to_end(config, 30)
    assert first.start == 50 and [(r.env_step, r.rollout_length) for r in first.retrains] == [(50, 1), (75, 2)]


def test_bench_rejects_a_segment_inside_exploration(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--preset", "inverted_pendulum",
                                      "--at", "10"])
    assert result.exit_code == 2
    assert "--at must be a due point of the model" in result.stderr
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--preset", "hopper", "--at", "5100"])
    assert result.exit_code == 2 and "multiple of rollout.train_freq (250)" in result.stderr


def test_bench_table_at_80_columns_keeps_names_and_numbers_whole() -> None:
    """At 80 columns the component names wrapped: the table now fits with every name and number whole."""
    import io

    from rich.console import Console

    from mbpo_cli.bench.timing import Timing
    from mbpo_cli.cli.bench import components_table

    timings = [Timing("sac_update", [1.234, 1.5, 2.0], 20.0), Timing("sac_update_eager", [3.1, 3.2], 0.0),
               Timing("model_train_step", [2.5, 2.6], 0.0), Timing("model_train_step_eager", [2.5, 2.61], 0.0),
               Timing("model_retrain", [12345.678, 23456.789], 0.004), Timing("rollout_step", [45.6, 50.0], 0.004),
               Timing("env_step", [0.05, 0.06], 1.0), Timing("eval_episode", [1234.5, 1300.0], 0.001)]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(components_table("mbpo bench: hopper on cpu", timings, 80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    words = set(text.replace("│", " ").split())
    for value in ("sac_update", "model_train_step_eager", "model_retrain", "eval_episode", "17,901", "12,346",
                  "23,457", "1.50", "0.055", "47.8", "0.004", "20", "69.4%", "median", "runs/step", "share"):
        assert value in words, (value, text)


def test_the_floor_is_two_n_cubed_flops_over_the_median_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 x 256^3 = 33,554,432 operations a call; calls of 2, 1 and 4 ms have a median of 2 ms: 16.777216 GFLOP/s.
    monkeypatch.setattr(timing, "measure", lambda fn, device, repeats, warmup: [2.0, 1.0, 4.0])
    floor = timing.matmul_floor(torch.device("cpu"))
    assert floor.gflops == pytest.approx(16.777216)
    assert floor.threads == torch.get_num_threads() and floor.device == "cpu"


def test_bench_floor_alone(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--floor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"floor_gflops", "threads", "device", "torch"} and data["floor_gflops"] > 0
    line = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--floor"]).stdout
    assert line.startswith("matmul floor: ") and "GFLOP/s (256^3 fp32 torch.bmm, cpu, " in line
