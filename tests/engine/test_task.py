"""The task as the engine meets it: custom termination and reward functions (called with the right shapes, or a
one-line error at start), the agent against the action space, the defaults of `--env`, and rollout timing."""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli.config.load import ConfigError, build_config
from mbpo_cli.engine import loop
from mbpo_cli.engine.loop import NumericalError, train
from mbpo_cli.engine.state import build_run
from mbpo_cli.engine.task import check_task, task_facts

TINY = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 3},
    "rollout": {"batch_size": 300, "schedule": [0, 0, 2, 2], "train_freq": 50},
    "agent": {"updates_per_step": 1, "batch_size": 32},
    "sac": {"hidden": 32},
    "train": {"steps": 250, "epoch_length": 50, "init_steps": 100, "eval_episodes": 1, "seed": 0, "device": "cpu",
              "threads": 1},
}

USER_MODULE = '''
import torch

CALLS = {"done": [], "reward": []}


def done(next_obs):
    CALLS["done"].append(tuple(next_obs.shape))
    return next_obs[:, 1].abs() > 0.2


def reward(obs, act, next_obs):
    CALLS["reward"].append((tuple(obs.shape), tuple(act.shape), tuple(next_obs.shape)))
    return torch.ones(obs.shape[0], device=obs.device)


def wrong_shape(next_obs):
    return next_obs[:, :2] > 0


def not_bool(next_obs):
    return next_obs[:, 1]


def raises(next_obs):
    raise ValueError("no termination for you")


def reward_nan(obs, act, next_obs):
    return torch.full((obs.shape[0],), float("nan"))
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module of termination and reward functions, importable under a name unique to the test."""
    name = f"user_fns_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _config(**env: str) -> dict:
    return {**TINY, "env": {**TINY["env"], **env}}


def test_custom_termination_and_reward_are_called_with_the_right_shapes(user_module: str) -> None:
    config = build_config(_config(termination=f"{user_module}:done", reward=f"{user_module}:reward"))
    check_task(config)
    module = __import__(user_module)
    assert module.CALLS["done"] == [(8, 4)]  # the check at start: 8 real transitions of InvertedPendulum
    assert module.CALLS["reward"] == [((8, 4), (8, 1), (8, 4))]
    module.CALLS["done"].clear()
    module.CALLS["reward"].clear()
    state = build_run(config)
    train(state)
    # rollouts call them on the live branches: all 300 at step 1, the survivors (N <= 300) at step 2
    assert module.CALLS["done"] and all(n <= 300 and d == 4 for n, d in module.CALLS["done"])
    assert module.CALLS["done"][0] == (300, 4)
    assert module.CALLS["reward"][0][1] == (300, 1)
    assert state.lone.model_buffer is not None and bool((state.lone.model_buffer.ordered().reward == 1.0).all())


@pytest.mark.parametrize(("key", "function", "message"), [
    ("termination", "wrong_shape", "must map next observations 8 x 4 to a bool tensor of shape (8,), got "
                                   "torch.bool (8, 2)"),
    ("termination", "not_bool", "to a bool tensor of shape (8,), got torch.float32 (8,)"),
    ("termination", "raises", "calling it on 8 real transitions failed: ValueError: no termination for you"),
    ("termination", "missing", "has no function 'missing'"),
    ("reward", "reward_nan", "to finite floats of shape (8,)"),
])
def test_bad_custom_functions_are_config_errors_at_start(user_module: str, key: str, function: str,
                                                         message: str) -> None:
    config = build_config(_config(**{key: f"{user_module}:{function}"}))
    with pytest.raises(ConfigError) as error:
        check_task(config)
    assert str(error.value).startswith(f"env.{key}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_module_that_cannot_be_imported() -> None:
    with pytest.raises(ConfigError, match=r"^env.reward: cannot import 'no_such_module_for_mbpo' for "
                                          r"no_such_module_for_mbpo:fn: ModuleNotFoundError"):
        check_task(build_config(_config(reward="no_such_module_for_mbpo:fn")))


def test_defaults_of_a_task_without_a_preset() -> None:
    facts, note = task_facts("CartPole-v1")
    assert (facts.obs_dim, facts.act_dim, facts.discrete, facts.termination) == (4, 2, True, "learned")
    assert note.startswith("env.termination: learned (CartPole-v1 has no known termination function")
    facts, note = task_facts("Pendulum-v1")
    assert (facts.discrete, facts.termination) == (False, "never")
    assert "no episode terminated in 2,000 random steps" in note
    facts, note = task_facts("Hopper-v5")
    assert facts.termination == "known" and note == "env.termination: known (hopper)"


def test_rollouts_at_the_start_of_each_episode(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rollout.when: episode` retrains and generates when exploration ends and at each later episode start."""
    calls: list[tuple[int, int]] = []
    real = loop.train_model

    def record(state: object) -> None:
        calls.append((state.env_step, state.lone.episode_length))  # type: ignore[attr-defined]
        real(state)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "train_model", record)
    state = build_run(build_config({**TINY, "rollout": {**TINY["rollout"], "when": "episode"}}))
    starts = []

    def episode_starts(event: object) -> None:
        if getattr(event, "episode_return", None) is not None and 100 <= event.env_step < 250:  # type: ignore[attr-defined]
            starts.append(event.env_step)  # type: ignore[attr-defined]

    train(state, episode_starts)
    assert calls[0] == (100, calls[0][1])
    assert [step for step, _ in calls[1:]] == starts
    assert all(length == 0 for _, length in calls[1:])
    assert len(calls) > 3  # early InvertedPendulum episodes are short: many starts in 150 steps
    assert torch.isfinite(torch.tensor(state.lone.model_info["model_holdout_loss"]))


class _Broken(gym.Env):
    """A Box task whose observation turns NaN (or its reward inf) after 30 steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def __init__(self, what: str = "obs") -> None:
        self.what, self.t = what, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        obs = np.full(3, np.nan if self.what == "obs" and self.t > 30 else 0.1, np.float32)
        reward = float("inf") if self.what == "reward" and self.t > 30 else 1.0
        return obs, reward, False, self.t >= 200, {}

    @property
    def state(self) -> np.ndarray:
        return np.zeros(3)


@pytest.mark.parametrize(("what", "message"), [
    ("obs", "environment BrokenTask-v0 returned a non-finite observation at env step 30"),
    ("reward", "environment BrokenTask-v0 returned a non-finite reward (inf) at env step 30"),
])
def test_a_non_finite_observation_or_reward_is_caught_where_it_arrives(what: str, message: str) -> None:
    gym.register("BrokenTask-v0", entry_point=_Broken, max_episode_steps=200)
    try:
        config = build_config({**TINY, "env": {"id": "BrokenTask-v0", "kwargs": {"what": what},
                                               "termination": "never"}, "algo": "model_free"})
        with pytest.raises(NumericalError, match=re.escape(message)):
            train(build_run(config))
    finally:
        del gym.registry["BrokenTask-v0"]
