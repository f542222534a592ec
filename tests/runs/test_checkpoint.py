"""Tests for exact checkpoints (mbpo_cli.checkpoint) and environment state capture (mbpo_cli.envs)."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli.config.load import resolve_config
from mbpo_cli.config.schema import Config, EnvConfig
from mbpo_cli.engine.envs import get_env_state, make_env, set_env_state
from mbpo_cli.engine.events import EpochEvent, Event
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import RunState, build_run
from mbpo_cli.runs import checkpoint
from mbpo_cli.runs.checkpoint import FORMAT_VERSION, CheckpointError, capture, load_file, restore, save_file

# A run that trains in a few seconds and exercises every phase: exploration, model retrains every 50
# steps, rollouts of length 1 -> 4 (early terminations, so the model buffer wraps at odd positions),
# SAC updates and evaluations.
TINY = [
    "train.init_steps=100", "train.epoch_length=50", "train.eval_episodes=1", "train.threads=1",
    "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32",
    "model.hidden=32", "model.ensemble_size=3", "model.elites=2", "model.max_epochs=3",
    "rollout.batch_size=200", "rollout.train_freq=50", "rollout.schedule=[1,3,1,4]",
]
TOTAL = 400
TIME_KEYS = ("time_",)


def tiny_config(*extra: str, steps: int = TOTAL) -> Config:
    return resolve_config(preset="inverted_pendulum", overrides=[*TINY, *extra], steps=steps)


def run_until(state: RunState, stop_at: int | None = None) -> list[tuple[int, dict[str, float]]]:
    """Train `state` to its total (or stop after env step `stop_at`); the epoch metrics without timings."""
    metrics: list[tuple[int, dict[str, float]]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, EpochEvent):
            metrics.append((event.env_step, {k: v for k, v in event.metrics.items() if not k.startswith(TIME_KEYS)}))

    stop = None if stop_at is None else (lambda: state.env_step >= stop_at)
    train(state, on_event, should_stop=stop)
    return metrics


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------------
# Environment state
# ---------------------------------------------------------------------------------------------


def _rollout(env: gym.Env, actions: list[np.ndarray]) -> list[tuple[bytes, float, bool, bool]]:
    """Step `actions`, resetting (unseeded: from the env's own RNG) when an episode ends."""
    trace = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((np.asarray(obs).tobytes(), float(reward), bool(terminated), bool(truncated)))
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append((np.asarray(obs).tobytes(), 0.0, False, False))
    return trace


@pytest.mark.parametrize(
    "env_config",
    [EnvConfig(id="InvertedPendulum-v5"), EnvConfig(id="Hopper-v5", kwargs={"max_episode_steps": 30})],
    ids=["InvertedPendulum-v5", "Hopper-v5"],
)
def test_env_state_roundtrip_is_bitwise(env_config: EnvConfig) -> None:
    rng = np.random.default_rng(0)
    env = make_env(env_config)
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    env.reset(seed=3)
    _rollout(env, [rng.uniform(space.low, space.high) for _ in range(12)])
    saved = get_env_state(env)
    actions = [rng.uniform(space.low, space.high) for _ in range(50)]
    expected = _rollout(env, actions)
    env.close()

    fresh = make_env(env_config)
    fresh.reset(seed=12345)
    set_env_state(fresh, saved)
    again = get_env_state(fresh)
    assert again.keys() == saved.keys()
    assert again["np_random"] == saved["np_random"]
    assert again.get("elapsed_steps") == saved.get("elapsed_steps")
    assert again["mujoco"].tobytes() == saved["mujoco"].tobytes()
    assert _rollout(fresh, actions) == expected
    fresh.close()
    # The sequence covered episode ends, so the env's own RNG (unseeded resets) was exercised too.
    assert any(terminated or truncated for _, _, terminated, truncated in expected)


# ---------------------------------------------------------------------------------------------
# Capture and restore of a whole run
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def straight_run() -> tuple[RunState, list[tuple[int, dict[str, float]]]]:
    """The reference: the tiny run trained without interruption."""
    state = build_run(tiny_config())
    return state, run_until(state)


@pytest.mark.parametrize("stop_at", [237, 350], ids=["mid-epoch", "epoch-end"])
def test_capture_restore_continues_exactly(
    straight_run: tuple[RunState, list[tuple[int, dict[str, float]]]], stop_at: int, tmp_path: Path
) -> None:
    reference, expected = straight_run
    first = build_run(tiny_config())
    before = run_until(first, stop_at)
    assert first.env_step == stop_at
    if stop_at == 350:
        # By then rollouts of varying length have wrapped the model ring buffer away from slot 0.
        assert first.lone.model_buffer is not None
        assert len(first.lone.model_buffer) == first.lone.model_buffer.capacity and first.lone.model_buffer.ptr != 0

    path = tmp_path / "ckpt.pt"
    size, digest = save_file(capture(first), path)
    assert size == path.stat().st_size and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    payload = load_file(path, digest)

    second = build_run(tiny_config())
    assert restore(second, payload) is True
    after = run_until(second)

    assert [s for s, _ in before + after] == [s for s, _ in expected]
    for (step, got), (_, want) in zip(before + after, expected, strict=True):
        assert got == want, f"metrics differ at env step {step}"
    assert second.env_step == reference.env_step == TOTAL
    assert_same_tensors(second.agent.state_dict(), reference.agent.state_dict())
    assert second.model is not None and reference.model is not None
    assert_same_tensors(second.model.state_dict(), reference.model.state_dict())


@pytest.fixture(scope="session")
def pipelined_run() -> tuple[RunState, list[tuple[int, dict[str, float]]]]:
    """The tiny run with the model retrained in a worker thread, trained without interruption."""
    state = build_run(tiny_config("train.pipeline=true"))
    return state, run_until(state)


def test_a_pipelined_run_is_reproducible_and_differs_from_the_sequential_one(
    straight_run: tuple[RunState, list[tuple[int, dict[str, float]]]],
    pipelined_run: tuple[RunState, list[tuple[int, dict[str, float]]]],
) -> None:
    reference, expected = pipelined_run
    again = build_run(tiny_config("train.pipeline=true"))
    assert run_until(again) == expected
    assert_same_tensors(again.agent.state_dict(), reference.agent.state_dict())
    assert again.model is not None and reference.model is not None
    assert_same_tensors(again.model.state_dict(), reference.model.state_dict())
    # The staler model changes what the agent learns from.
    assert expected != straight_run[1]


@pytest.mark.parametrize("stop_at", [175, 237, 350], ids=["job-just-started", "mid-epoch", "epoch-end"])
def test_a_pipelined_run_continues_exactly_with_its_background_retrain(
    pipelined_run: tuple[RunState, list[tuple[int, dict[str, float]]]], stop_at: int, tmp_path: Path
) -> None:
    """The checkpoint waits for the retrain running in the background and holds its result, which the resumed
    run takes at the next due point as the uninterrupted run does."""
    reference, expected = pipelined_run
    first = build_run(tiny_config("train.pipeline=true"))
    before = run_until(first, stop_at)
    assert first.model_job is not None
    path = tmp_path / "ckpt.pt"
    _, digest = save_file(capture(first), path)
    second = build_run(tiny_config("train.pipeline=true"))
    assert restore(second, load_file(path, digest)) is True
    assert second.model_job is not None and second.model_job.started_at == first.model_job.started_at
    after = run_until(second)
    assert before + after == expected
    assert_same_tensors(second.agent.state_dict(), reference.agent.state_dict())
    assert second.model is not None and reference.model is not None
    assert_same_tensors(second.model.state_dict(), reference.model.state_dict())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_a_checkpoint_written_before_the_agent_section_continues_exactly(
    straight_run: tuple[RunState, list[tuple[int, dict[str, float]]]]
) -> None:
    """Checkpoints of earlier versions name the agent's update counter, its phase time and its config keys
    after SAC (and keep the temperature among the epoch sums): they restore and continue as today's."""
    reference, expected = straight_run
    first = build_run(tiny_config())
    before = run_until(first, 237)
    payload = capture(first)
    payload["counters"]["sac_updates"] = payload["counters"].pop("agent_updates")
    acc = payload["epoch_acc"]
    acc["seconds"]["sac"] = acc["seconds"].pop("agent")
    acc["sums"]["alpha"] = torch.tensor(0.5)
    del acc["counts"], payload["rng"]["generators"]["done"]
    config = payload["config"]
    config["sac"].update(config.pop("agent"))
    del config["sac"]["name"]
    second = build_run(tiny_config())
    assert restore(second, payload) is True
    after = run_until(second)
    assert [(s, m) for s, m in before + after] == expected
    assert_same_tensors(second.agent.state_dict(), reference.agent.state_dict())


def test_restore_then_capture_gives_the_same_payload(tmp_path: Path) -> None:
    config = tiny_config("algo=model_free", steps=150)
    state = build_run(config)
    run_until(state, 120)
    path = tmp_path / "sac.pt"
    _, digest = save_file(capture(state), path)
    payload = load_file(path, digest)
    fresh = build_run(config)
    restore(fresh, payload)
    again = capture(fresh)
    assert "model" not in again
    for key in payload:
        assert _same(payload[key], again[key]), key


def test_restore_applies_the_configs_learning_rates() -> None:
    state = build_run(tiny_config(steps=60))
    payload = capture(state)
    changed = build_run(tiny_config("sac.lr=0.001", "model.lr=0.002", steps=60))
    restore(changed, payload)
    assert all(g["lr"] == 0.001 for opt in changed.agent.optimizers().values() for g in opt.param_groups)
    assert changed.model_optimizer is not None
    assert all(g["lr"] == 0.002 for g in changed.model_optimizer.param_groups)


def test_restore_extends_the_real_buffer_for_more_steps() -> None:
    state = build_run(tiny_config("algo=sac", steps=60))
    run_until(state)
    bigger = build_run(tiny_config("algo=sac", steps=90))
    restore(bigger, capture(state))
    assert bigger.lone.real_buffer.capacity == 90 and len(bigger.lone.real_buffer) == 60
    assert torch.equal(bigger.lone.real_buffer.ordered().obs, state.lone.real_buffer.ordered().obs)
    run_until(bigger)
    assert bigger.env_step == 90 and len(bigger.lone.real_buffer) == 90


def test_restore_refuses_another_format() -> None:
    state = build_run(tiny_config("algo=sac", steps=60))
    payload = capture(state)
    payload["format"] = FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="format"):
        restore(build_run(tiny_config("algo=sac", steps=60)), payload)


# ---------------------------------------------------------------------------------------------
# Files: atomic writes, verification, safe loading
# ---------------------------------------------------------------------------------------------

PAYLOAD = {"format": FORMAT_VERSION, "weights": torch.arange(1000, dtype=torch.float32), "step": 7}


def test_save_file_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "step-1.pt"
    size, digest = save_file(PAYLOAD, path)
    data = path.read_bytes()
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1.pt"]
    loaded = load_file(path, digest)
    assert loaded["step"] == 7 and torch.equal(loaded["weights"], PAYLOAD["weights"])


def test_save_file_into_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_file(PAYLOAD, tmp_path / "missing" / "step-1.pt")
    assert not (tmp_path / "missing").exists()


def _fail(*_args: Any, **_kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = tmp_path / "step-1.pt"
    _, digest = save_file(PAYLOAD, path)
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint.os, failing, _fail)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        save_file({**PAYLOAD, "step": 8}, path)
    monkeypatch.undo()
    assert len(str(info.value).splitlines()) == 1
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1.pt"]
    assert load_file(path, digest)["step"] == 7


def test_load_file_detects_a_flipped_byte(tmp_path: Path) -> None:
    path = tmp_path / "step-1.pt"
    _, digest = save_file(PAYLOAD, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_file(path, digest)


def test_load_file_detects_truncation(tmp_path: Path) -> None:
    path = tmp_path / "step-1.pt"
    _, digest = save_file(PAYLOAD, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_file(path, digest)
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_file(path)


def test_load_file_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_file(tmp_path / "nope.pt")


class Exploit:
    """Unpickling this would run arbitrary code; weights_only loading must refuse it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


class Custom:
    """A harmless custom class, still not allowed in a checkpoint."""

    def __init__(self) -> None:
        self.value = 1


@pytest.mark.parametrize("obj", [Exploit(), Custom()], ids=["reduce", "custom-class"])
def test_load_file_refuses_arbitrary_pickles(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_VERSION, "x": obj}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain data") as raised:
        load_file(path, digest)
    assert "weights_only=False" not in str(raised.value) and "\x1b" not in str(raised.value)  # no unsafe advice
    path.write_bytes(pickle.dumps({"x": obj}, protocol=2))
    with pytest.raises(CheckpointError, match=r"cannot be loaded|holds objects other than") as raised:
        load_file(path)
    assert "weights_only=False" not in str(raised.value)


def test_load_file_refuses_a_payload_that_is_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not an mbpo checkpoint"):
        load_file(path)


def test_a_pipelined_run_saved_before_its_first_model_continues_exactly(
    pipelined_run: tuple[RunState, list[tuple[int, dict[str, float]]]]
) -> None:
    """Saved while exploring, no model trained yet: today's file says so (`model_trained_at` None) and a file of
    earlier versions (0, with no model metrics) reads the same, so the resumed run trains its first model in place
    at the end of exploration as the uninterrupted run does."""
    reference, expected = pipelined_run
    for written in (None, 0):
        first = build_run(tiny_config("train.pipeline=true"))
        before = run_until(first, 75)
        payload = capture(first)
        assert payload["counters"]["model_trained_at"] is None and payload["model_info"] == {}
        payload["counters"]["model_trained_at"] = written
        second = build_run(tiny_config("train.pipeline=true"))
        assert restore(second, payload) is True
        assert second.model_trained_at is None
        assert before + run_until(second) == expected
        assert_same_tensors(second.agent.state_dict(), reference.agent.state_dict())
