"""A dm_control task through shimmy (issue 28, item 1): `dm_control/cartpole-swingup-v0` trains from its preset,
checkpoints (which failed on dm_control's legacy RandomState), continues exactly from a checkpoint taken mid-run as
the uninterrupted run does, and evaluates.

Needs the `dmc` extra (shimmy, dm_control): the tests skip without it, and fail instead where CI sets
$MBPO_REQUIRE_SERVERS.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import servers
import torch
from clihelpers import mbpo

from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.config.schema import Config, EnvConfig
from mbpo_cli.engine.envs import env_spec, get_env_state, make_env, set_env_state
from mbpo_cli.engine.events import EpochEvent, Event
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import RunState, build_run
from mbpo_cli.runs.checkpoint import capture, load_file, restore, save_file

MISSING = [name for name in ("shimmy", "dm_control") if importlib.util.find_spec(name) is None]


@pytest.fixture(autouse=True)
def _needs_the_dmc_extra() -> None:
    servers.skip_unless_available(f"{' and '.join(MISSING)} not installed: pip install 'mbpo-cli[dmc]'"
                                  if MISSING else None)


PRESET = "dmc_cartpole_swingup"
TINY = [
    "env.kwargs.max_episode_steps=100",  # episodes end (and reset from the task's RandomState) within the run
    "train.init_steps=100", "train.epoch_length=50", "train.eval_episodes=1", "train.threads=1",
    "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32",
    "model.hidden=32", "model.ensemble_size=3", "model.elites=2", "model.max_epochs=3",
    "rollout.batch_size=200", "rollout.train_freq=50", "rollout.schedule=[1,3,1,4]",
]
STEPS = 300
UNTIMED = ("time_",)


def tiny_config() -> Config:
    return resolve_config(preset=PRESET, overrides=TINY, steps=STEPS, device="cpu")


def run_until(state: RunState, stop_at: int | None = None) -> list[tuple[int, dict[str, float]]]:
    """Train `state` to its total (or stop after env step `stop_at`); the epoch metrics without timings."""
    metrics: list[tuple[int, dict[str, float]]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, EpochEvent):
            metrics.append((event.env_step, {k: v for k, v in event.metrics.items() if not k.startswith(UNTIMED)}))

    train(state, on_event, should_stop=None if stop_at is None else (lambda: state.env_step >= stop_at))
    return metrics


def test_the_preset_is_dm_control_s_task_with_the_suite_s_episodes() -> None:
    config = resolve_config(preset=PRESET)
    assert (config.env.id, config.env.termination, config.env.kwargs) == (
        "dm_control/cartpole-swingup-v0", "never", {"max_episode_steps": 1000})


def test_the_suite_s_own_step_limit_continues_from_the_captured_state() -> None:
    """Without gymnasium's TimeLimit, dm_control itself ends the episode at its 1,000th step: captured 10 steps
    before, the restored environment ends it at the same step and resets from the same random state."""
    env = make_env(EnvConfig(id="dm_control/cartpole-swingup-v0"))
    assert env_spec(env).max_episode_steps is None
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    for _ in range(990):
        env.step(rng.uniform(-1, 1, 1))
    saved = get_env_state(env)
    assert saved["dm_control_step_count"] == 990 and saved["np_random"]["bit_generator"] == "MT19937"

    def rollout(env: gym.Env, actions: list[np.ndarray]) -> list[tuple[bytes, float, bool]]:
        trace = []
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            trace.append((np.asarray(obs).tobytes(), float(reward), terminated or truncated))
            if terminated or truncated:
                trace.append((np.asarray(env.reset()[0]).tobytes(), 0.0, False))
        return trace

    actions = [rng.uniform(-1, 1, 1) for _ in range(20)]
    expected = rollout(env, actions)
    assert [i for i, (_, _, ended) in enumerate(expected) if ended] == [9]
    fresh = make_env(EnvConfig(id="dm_control/cartpole-swingup-v0"))
    fresh.reset(seed=7)
    set_env_state(fresh, saved)
    assert rollout(fresh, actions) == expected


def test_a_dm_control_task_continues_exactly_from_a_checkpoint_taken_mid_episode(tmp_path: Path) -> None:
    reference = build_run(tiny_config())
    expected = run_until(reference)
    assert [step for step, _ in expected] == [50, 100, 150, 200, 250, 300]

    first = build_run(tiny_config())
    before = run_until(first, 237)
    assert first.lone.episode_length == 37  # mid-episode: the physics, the task's RandomState and both step counters
    path = tmp_path / "ckpt.pt"
    _, digest = save_file(capture(first), path)
    second = build_run(tiny_config())
    assert restore(second, load_file(path, digest)) is True
    after = run_until(second)

    assert before + after == expected
    for a, b in ((second.agent.state_dict(), reference.agent.state_dict()),
                 (second.model.state_dict(), reference.model.state_dict())):  # type: ignore[union-attr]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_dm_control_run_trains_says_how_it_flattens_and_evaluates(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", "--preset", PRESET, "--steps", "150", "--device", "cpu", "--json",
                  *(arg for item in TINY for arg in ("--set", item)))
    assert result.exit_code == 0, result.output
    assert ("env: dm_control/cartpole-swingup-v0's observation is flattened (gymnasium's FlattenObservation) to 5 "
            "values: position [0:3], velocity [3:5]; eval and export take it flattened the same way") in result.stderr
    run = json.loads(result.stdout)
    assert (run["status"], run["env_steps"]) == ("finished", 150)
    evaluated = mbpo(runs_dir, "eval", run["id"], "--episodes", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["lengths"] == [100, 100]
