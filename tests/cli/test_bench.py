"""`mbpo bench` times every component and reports the documented JSON keys."""

import json

from typer.testing import CliRunner

from mbpo_cli.cli.app import app


def test_bench_json_has_the_documented_keys(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--runs-dir", str(tmp_path), "bench", "--preset", "inverted_pendulum",
                                      "--steps", "5", "--samples", "300", "--repeats", "2", "--json",
                                      "--set", "model.max_epochs=3", "--set", "rollout.batch_size=2000"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("device", "sac_update_ms", "model_train_step_ms", "rollout_step_ms", "env_step_ms",
                "env_steps_per_s", "model_retrain_ms", "eval_episode_ms"):
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
