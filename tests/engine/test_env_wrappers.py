"""Any gymnasium task (issue 28, item 1): `env.wrappers` by name and by `module:Class`, checked at load with
one-line errors; Dict observations flattened (and said where each part lies); namespaced ids whose package is
imported or named; and the environment state that exact resume needs for tasks with a legacy `RandomState`, a goal,
or a TimeLimit of `env.wrappers` around gymnasium's own.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.config.schema import EnvConfig, WrapperConfig
from mbpo_cli.config.validation import build_config
from mbpo_cli.engine import env_ids
from mbpo_cli.engine.env_ids import NamespacePackage
from mbpo_cli.engine.env_wrappers import ObservationPart, observation_parts
from mbpo_cli.engine.envs import EnvError, env_spec, get_env_state, make_env, set_env_state
from mbpo_cli.engine.state import _as_tensors
from mbpo_cli.models.termination.custom import working_directory_importable

MODULE = "mbpo_test_wrappers_i28"
"""A module the tests write into a temporary working directory: a wrapper, and tasks it registers on import."""

SOURCE = '''
import gymnasium as gym
import numpy as np


class DoubleReward(gym.RewardWrapper):
    def __init__(self, env, factor=2.0):
        super().__init__(env)
        self.factor = factor

    def reward(self, reward):
        return self.factor * reward


class LegacyWalk(gym.Env):
    """A random walk whose noise comes from a legacy RandomState, as dm_control's tasks' does."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.state = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None or not isinstance(self.np_random, np.random.RandomState):
            self.np_random = np.random.RandomState(seed)
        self.state = self.np_random.normal(size=2)
        return self.state.copy(), {}

    def step(self, action):
        self.state = self.state + 0.1 * float(action[0]) + self.np_random.normal(scale=0.1, size=2)
        return self.state.copy(), -float(np.abs(self.state).sum()), bool(np.abs(self.state).max() > 3.0), False, {}


class GoalPoint(gym.Env):
    """A point and a goal drawn at reset, observed as a Dict (as gymnasium-robotics' goal tasks are)."""

    def __init__(self):
        box = gym.spaces.Box(-10.0, 10.0, (2,), np.float64)
        self.observation_space = gym.spaces.Dict({"observation": box, "desired_goal": box,
                                                  "steps": gym.spaces.Discrete(3)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(2)
        self.goal = np.zeros(2)

    def _obs(self):
        return {"observation": self.state.copy(), "desired_goal": self.goal.copy(), "steps": 1}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1.0, 1.0, size=2)
        self.goal = self.np_random.uniform(-1.0, 1.0, size=2)
        return self._obs(), {}

    def step(self, action):
        self.state = np.clip(self.state + 0.1 * np.asarray(action, np.float64), -10.0, 10.0)
        return self._obs(), -float(np.linalg.norm(self.state - self.goal)), False, False, {}


gym.register("MbpoTestLegacyWalk-v0", entry_point=LegacyWalk, max_episode_steps=40)
gym.register("MbpoTestGoalPoint-v0", entry_point=GoalPoint, max_episode_steps=25)
gym.register("mbpo_test_ns_i28/Point-v0", entry_point=GoalPoint, max_episode_steps=25)
'''


def _forget() -> None:
    sys.modules.pop(MODULE, None)
    for env_id in ("MbpoTestLegacyWalk-v0", "MbpoTestGoalPoint-v0", "mbpo_test_ns_i28/Point-v0"):
        gym.registry.pop(env_id, None)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding the module, not importable until `mbpo` makes it so."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    _forget()
    yield tmp_path
    _forget()


def _load_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_config(preset="inverted_pendulum", overrides=list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def _env_error(config: EnvConfig) -> str:
    with pytest.raises(EnvError) as info:
        make_env(config)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# env.wrappers
# ---------------------------------------------------------------------------------------------


def test_gymnasium_wrappers_by_name_apply_in_order_with_their_kwargs() -> None:
    config = resolve_config(preset="inverted_pendulum", overrides=[
        "env.wrappers=[{name: RescaleAction, kwargs: {min_action: -2, max_action: 2}}, "
        "{name: TimeLimit, kwargs: {max_episode_steps: 7}}]"])
    assert config.env.wrappers == (WrapperConfig("RescaleAction", {"min_action": -2, "max_action": 2}),
                                   WrapperConfig("TimeLimit", {"max_episode_steps": 7}))
    env = make_env(config.env)
    assert isinstance(env, gym.wrappers.TimeLimit) and isinstance(env.env, gym.wrappers.RescaleAction)
    spec = env_spec(env)
    assert (spec.act_low.tolist(), spec.act_high.tolist(), spec.max_episode_steps) == ([-2.0], [2.0], 7)
    env.reset(seed=0)
    steps = 0
    while not any(env.step(np.zeros(1))[2:4]):
        steps += 1
    assert steps + 1 <= 7
    env.close()
    # the wrappers are part of the recorded config: its plain form gives them back
    assert resolve_config(preset="inverted_pendulum", overrides=[]).env.wrappers == ()
    assert config.to_dict()["env"]["wrappers"][1] == {"name": "TimeLimit", "kwargs": {"max_episode_steps": 7}}
    assert build_config(config.to_dict()) == config


def test_a_module_class_wrapper_comes_from_the_working_directory(work: Path) -> None:
    env = make_env(EnvConfig(id="InvertedPendulum-v5",
                             wrappers=(WrapperConfig(f"{MODULE}:DoubleReward", {"factor": 3.0}),)))
    plain = make_env(EnvConfig(id="InvertedPendulum-v5"))
    env.reset(seed=1)
    plain.reset(seed=1)
    assert env.step(np.zeros(1))[1] == 3.0 * plain.step(np.zeros(1))[1]
    env.close()
    plain.close()


@pytest.mark.parametrize(("override", "expected"), [
    ("env.wrappers=[{name: RescaleActon}]",
     "env.wrappers[0].name: 'RescaleActon' is not a wrapper of gymnasium.wrappers (did you mean RescaleAction?)"),
    ("env.wrappers=[{name: NormalizeObservation}]",
     "env.wrappers[0].name: NormalizeObservation keeps running observation statistics, which checkpoints do not "
     "restore: not supported"),
    ("env.wrappers=[{kwargs: {}}]",
     "env.wrappers[0].name: required: a wrapper of gymnasium.wrappers (e.g. RescaleAction) or module:Class"),
    ("env.wrappers=[{name: RescaleAction, kwarg: {}}]", "env.wrappers[0].kwarg: unknown key (known: kwargs, name)"),
    ("env.wrappers=[{name: ClipAction}, RescaleAction]",
     "env.wrappers[1]: expected a mapping, got str 'RescaleAction'"),
    ("env.wrappers=RescaleAction", "env.wrappers: expected a list, got str 'RescaleAction'"),
    ("env.wrappers=[{name: 'a:b:c'}]",
     "env.wrappers[0].name: expected a gymnasium wrapper's name or module:Class, got 'a:b:c'"),
    ("env.wrappers=[{name: vector}]", "env.wrappers[0].name: gymnasium.wrappers.vector is not a wrapper of one "
                                      "environment"),
])
def test_a_bad_wrapper_is_one_line_at_load(override: str, expected: str) -> None:
    assert _load_error(override) == f"command line: {expected}"


def test_a_wrapper_that_cannot_be_made_is_one_line_when_the_env_is_made(work: Path) -> None:
    def error(name: str, **kwargs: Any) -> str:
        return _env_error(EnvConfig(id="InvertedPendulum-v5", wrappers=(WrapperConfig(name, kwargs),)))

    assert error("no_such_module_i28:Wrap") == (
        "env.wrappers[0] (no_such_module_i28:Wrap): cannot import 'no_such_module_i28' (from the working directory "
        "or the installed packages): ModuleNotFoundError: No module named 'no_such_module_i28'")
    assert error(f"{MODULE}:Missing") == (
        f"env.wrappers[0] ({MODULE}:Missing): '{MODULE}' has no 'Missing', not a gymnasium.Wrapper subclass")
    assert error(f"{MODULE}:LegacyWalk") == (
        f"env.wrappers[0] ({MODULE}:LegacyWalk): {MODULE}:LegacyWalk is a class, not a gymnasium.Wrapper subclass")
    assert error("RescaleAction", foo=1).startswith(
        "env.wrappers[0] (RescaleAction): bad kwargs: TypeError: RescaleAction.__init__() got an unexpected keyword")
    assert error("FilterObservation", filter_keys=["a"]).startswith(
        "env.wrappers[0] (FilterObservation): cannot wrap the task: ValueError: FilterObservation wrapper is only "
        "usable with `Dict` and `Tuple` observations")


# ---------------------------------------------------------------------------------------------
# Dict observations
# ---------------------------------------------------------------------------------------------


def test_a_dict_observation_is_flattened_and_its_parts_located(work: Path) -> None:
    env = make_env(EnvConfig(id=f"{MODULE}:MbpoTestGoalPoint-v0"))
    spec = env_spec(env)
    # gymnasium's Dict orders its keys; a Discrete part is one-hot
    assert spec.flattened == (ObservationPart("desired_goal", 0, 2), ObservationPart("observation", 2, 4),
                              ObservationPart("steps", 4, 7))
    assert spec.obs_dim == 7
    obs, _ = env.reset(seed=0)
    base: Any = env.unwrapped
    assert obs.shape == (7,)
    assert obs[0:2].tolist() == base.goal.tolist() and obs[2:4].tolist() == base.state.tolist()
    assert obs[4:7].tolist() == [0, 1, 0]
    env.close()


def test_parts_follow_gymnasium_s_flatten_for_nested_spaces() -> None:
    box = gym.spaces.Box(-1.0, 1.0, (2, 3))
    space = gym.spaces.Dict({"b": gym.spaces.Tuple((box, gym.spaces.Discrete(2))), "a": gym.spaces.Box(0, 1, ())})
    parts = observation_parts(space)
    assert parts == (ObservationPart("a", 0, 1), ObservationPart("b.0", 1, 7), ObservationPart("b.1", 7, 9))
    sample = space.sample()
    flat = gym.spaces.flatten(space, sample)
    assert flat[1:7].tolist() == sample["b"][0].reshape(-1).tolist()
    assert flat.shape == (parts[-1].stop,)


def test_a_flat_observation_is_not_flattened_and_another_is_refused() -> None:
    assert env_spec(make_env(EnvConfig(id="InvertedPendulum-v5"))).flattened == ()
    message = _env_error(EnvConfig(id="InvertedPendulum-v5", wrappers=(
        WrapperConfig("ReshapeObservation", {"shape": [2, 2]}),)))
    assert message == ("environment 'InvertedPendulum-v5' has a Box(-inf, inf, (2, 2), float64) observation space; "
                       "the agents need a flat Box (a Dict or Tuple is flattened; add FlattenObservation to "
                       "env.wrappers for another)")
    flattened = make_env(EnvConfig(id="InvertedPendulum-v5", wrappers=(
        WrapperConfig("ReshapeObservation", {"shape": [2, 2]}), WrapperConfig("FlattenObservation"))))
    assert env_spec(flattened).obs_dim == 4


# ---------------------------------------------------------------------------------------------
# Namespaced ids
# ---------------------------------------------------------------------------------------------


def test_a_namespace_s_package_is_imported_or_named(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(env_ids.NAMESPACE_PACKAGES, "mbpo_test_ns_i28",
                        NamespacePackage(MODULE, "the test's module", "write it"))
    working_directory_importable()
    env = make_env(EnvConfig(id="mbpo_test_ns_i28/Point-v0"))
    assert env_spec(env).obs_dim == 7
    env.close()
    monkeypatch.setitem(env_ids.NAMESPACE_PACKAGES, "mbpo_test_missing_i28",
                        NamespacePackage("mbpo_no_such_package_i28", "mbpo-no-such-package",
                                         "pip install mbpo-no-such-package"))
    assert _env_error(EnvConfig(id="mbpo_test_missing_i28/Point-v0")) == (
        "environment 'mbpo_test_missing_i28/Point-v0': the mbpo_test_missing_i28 namespace needs "
        "mbpo-no-such-package: pip install mbpo-no-such-package")


def test_an_unknown_namespace_is_one_line_with_the_way_forward() -> None:
    assert _env_error(EnvConfig(id="nosuchsuite_i28/Task-v0")) == (
        "environment 'nosuchsuite_i28/Task-v0': namespace 'nosuchsuite_i28' is not registered: install the package "
        "that registers it and name its module, as in --env PACKAGE:nosuchsuite_i28/Task-v0")
    assert "did you mean dm_control? Otherwise install" in _env_error(EnvConfig(id="dm-control/cartpole-swingup-v0"))


# ---------------------------------------------------------------------------------------------
# Environment state for exact resume
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


def _through_a_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """`state` as a checkpoint stores and gives it back (tensors, `weights_only` loading)."""
    buffer = io.BytesIO()
    torch.save(_as_tensors(state), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    return {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in loaded.items()}


def _continues_exactly(config: EnvConfig, act_dim: int, steps: int = 120) -> dict[str, Any]:
    """Capture mid-episode, restore into a fresh env reset with another seed: the same trajectory follows,
    unseeded resets included. Returns the captured state."""
    rng = np.random.default_rng(0)
    env = make_env(config)
    env.reset(seed=3)
    _rollout(env, [rng.uniform(-1, 1, act_dim) for _ in range(11)])
    saved = get_env_state(env)
    actions = [rng.uniform(-1, 1, act_dim) for _ in range(steps)]
    expected = _rollout(env, actions)
    fresh = make_env(config)
    fresh.reset(seed=12345)
    set_env_state(fresh, _through_a_checkpoint(saved))
    assert _rollout(fresh, actions) == expected
    assert any(terminated or truncated for _, _, terminated, truncated in expected)
    return saved


def test_a_legacy_random_state_round_trips(work: Path) -> None:
    saved = _continues_exactly(EnvConfig(id=f"{MODULE}:MbpoTestLegacyWalk-v0"), 1)
    assert saved["np_random"]["bit_generator"] == "MT19937"


def test_a_goal_round_trips(work: Path) -> None:
    saved = _continues_exactly(EnvConfig(id=f"{MODULE}:MbpoTestGoalPoint-v0"), 2, steps=60)
    assert saved["attribute:goal"].shape == (2,)


def test_a_time_limit_of_env_wrappers_round_trips_with_gymnasium_s_own() -> None:
    """HalfCheetah never terminates: every episode ends when gymnasium's TimeLimit (30 steps, inside the action
    repeat) truncates it, after 15 steps of the outer TimeLimit (20)."""
    config = EnvConfig(id="HalfCheetah-v5", kwargs={"max_episode_steps": 30}, wrappers=(
        WrapperConfig("RepeatAction", {"num_repeats": 2}), WrapperConfig("TimeLimit", {"max_episode_steps": 20})))
    saved = _continues_exactly(config, 6, steps=40)
    assert (saved["elapsed_steps"], saved["inner_elapsed_steps"]) == (11, [22])
