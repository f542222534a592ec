"""Environments: creation with clear errors, task dimensions, and exact state capture for resume."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from mbpo_cli.config.schema import EnvConfig
from mbpo_cli.engine.env_ids import register_namespace
from mbpo_cli.engine.env_state import (
    TASK_ARRAYS,
    dm_control_environment,
    dm_control_state,
    physics_state,
    random_state,
    set_dm_control_state,
    set_physics_state,
    set_random_state,
    set_task_attributes,
    task_attributes,
)
from mbpo_cli.engine.env_wrappers import ObservationPart, flattened_parts, wrapped
from mbpo_cli.engine.errors import EnvError
from mbpo_cli.models.termination.custom import working_directory_importable


@dataclass(frozen=True)
class EnvSpec:
    """What the engine needs to know of a task.

    Actions are float vectors of `act_dim` everywhere inside the engine: in `[-1, 1]^A` for a Box task
    (rescaled to the task's bounds by :func:`to_env_action`), one-hot over the `act_dim` choices for a
    Discrete one.
    """

    obs_dim: int
    act_dim: int
    act_low: np.ndarray
    act_high: np.ndarray
    max_episode_steps: int | None
    discrete: bool = False
    flattened: tuple[ObservationPart, ...] = ()
    """Where each part of a Dict or Tuple observation lies in the flat one `mbpo` made of it (() when the task's
    observation was flat)."""

    @property
    def action_space(self) -> str:
        """How the task acts, in words: `Box(3)` or `Discrete(2)`."""
        return f"Discrete({self.act_dim})" if self.discrete else f"Box({self.act_dim})"


def import_mujoco_without_rendering() -> None:
    """Import MuJoCo with ``MUJOCO_GL=disable`` unless it is imported already: training and evaluation never render.

    mujoco 4 loads the OpenGL backend that ``MUJOCO_GL`` names when it is imported, and a backend that cannot load
    here (``osmesa`` without libOSMesa: PyOpenGL's AttributeError) would fail the import, and so the run.
    ``MUJOCO_GL`` itself is left as it was, for the video child (which imports mujoco itself, first).
    """
    if "mujoco" in sys.modules:
        return
    saved = os.environ.get("MUJOCO_GL")
    os.environ["MUJOCO_GL"] = "disable"
    try:
        importlib.import_module("mujoco")
    except ImportError:
        pass  # a task that needs MuJoCo says so when it is made
    finally:
        if saved is None:
            os.environ.pop("MUJOCO_GL", None)
        else:
            os.environ["MUJOCO_GL"] = saved


def _import_env_module(env_id: str) -> None:
    """Import the module of a `module:EnvId` id (the working directory importable), which registers the
    environment, as `gymnasium.make` would; an EnvError naming the module when it cannot be imported."""
    module, _, name = env_id.partition(":")
    if ":" in name or not module or not name:
        raise EnvError(f"environment '{env_id}': expected ENV_ID or module:ENV_ID (one colon)")
    working_directory_importable()
    try:
        importlib.import_module(module)
    except Exception as err:  # any import-time failure of user code is the user's to fix
        first = str(err).strip().splitlines()
        raise EnvError(f"environment '{env_id}': cannot import {module!r} (from the working directory or the "
                       f"installed packages): {type(err).__name__}{': ' + first[0] if first else ''}") from None


def make_env(config: EnvConfig) -> gym.Env:
    """A gymnasium environment for `config`, or an EnvError (unknown id, bad kwargs, unsupported spaces).

    An id `module:EnvId` first imports `module` (from the working directory too), which registers `EnvId`; a
    namespaced id imports the package of its namespace (`dm_control/...`: shimmy). The environment is inside the
    wrappers of `config.wrappers`, and a Dict or Tuple observation is flattened (see `mbpo_cli.engine.env_wrappers`).
    """
    import_mujoco_without_rendering()
    if ":" in config.id:
        _import_env_module(config.id)
    register_namespace(config.id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env = gym.make(config.id, **config.kwargs)
        except gym.error.Error as err:
            raise EnvError(f"environment '{config.id}': {err}") from None
        except TypeError as err:
            raise EnvError(f"environment '{config.id}': bad env.kwargs: {err}") from None
        except ImportError as err:
            raise EnvError(f"environment '{config.id}' needs a missing package: {err}") from None
        env = wrapped(env, config)
    space = env.action_space
    flat_box = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    if not flat_box and not (isinstance(space, gym.spaces.Discrete) and int(space.start) == 0):
        env.close()
        raise EnvError(f"environment '{config.id}' has a {space} action space; the agents support a flat Box "
                       "(sac, td3, ddpg) or a Discrete space starting at 0 (dqn)")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise EnvError(f"environment '{config.id}' has a {env.observation_space} observation space; the agents need a "
                       "flat Box (a Dict or Tuple is flattened; add FlattenObservation to env.wrappers for another)")
    return env


def env_spec(env: gym.Env) -> EnvSpec:
    """Dimensions and action bounds of `env`."""
    space = env.action_space
    obs_shape = env.observation_space.shape
    if obs_shape is None:
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise EnvError(f"environment '{name}' has a {env.observation_space} observation space without a shape")
    obs_dim = int(np.prod(obs_shape))
    limit = env.spec.max_episode_steps if env.spec is not None else None
    parts = flattened_parts(env)
    if isinstance(space, gym.spaces.Discrete):
        n = int(space.n)
        return EnvSpec(obs_dim, n, np.zeros(n, np.float32), np.ones(n, np.float32), limit, discrete=True,
                       flattened=parts)
    assert isinstance(space, gym.spaces.Box)
    return EnvSpec(obs_dim, int(np.prod(space.shape)), space.low.astype(np.float32), space.high.astype(np.float32),
                   limit, flattened=parts)


def _time_limits(env: gym.Env) -> list[gym.wrappers.TimeLimit]:
    """The TimeLimit wrappers around the task, outermost first (gymnasium's own, and any of `env.wrappers`)."""
    limits = []
    wrapper: Any = env
    while isinstance(wrapper, gym.Wrapper):
        if isinstance(wrapper, gym.wrappers.TimeLimit):
            limits.append(wrapper)
        wrapper = wrapper.env
    return limits


def get_env_state(env: gym.Env) -> dict[str, Any]:
    """The environment's full state mid-episode: physics, RNG and time-limit counter.

    For MuJoCo tasks the physics is `mj_getState(mjSTATE_INTEGRATION)` (qpos, qvel, act, time,
    warm-start, ...), which makes the continued trajectory bitwise identical; a dm_control task (through shimmy)
    adds its step counter, a goal-conditioned task its `goal`. Another task's state is its own numbers and numeric
    arrays (`state` for a classic control task); one that keeps state elsewhere (in lists, in other objects) does not
    continue exactly. The RNG is a `Generator` or a legacy `RandomState` (dm_control's task's).
    """
    base: Any = env.unwrapped  # the task's own attributes (MuJoCo's model and data, a classic task's state)
    state: dict[str, Any] = {"np_random": random_state(base.np_random)}
    limits = _time_limits(env)
    if limits:
        state["elapsed_steps"] = limits[0]._elapsed_steps
    if len(limits) > 1:  # a TimeLimit of env.wrappers around gymnasium's own: the inner ones' counters
        state["inner_elapsed_steps"] = [limit._elapsed_steps for limit in limits[1:]]
    data = getattr(base, "data", None)
    model = getattr(base, "model", None)
    dm_control = dm_control_environment(base)
    if dm_control is not None:
        state.update(dm_control_state(dm_control))
    elif data is not None and model is not None:
        state["mujoco"] = physics_state(model, data)
    elif hasattr(base, "state"):
        state["classic"] = np.array(base.state, dtype=np.float64)
        if hasattr(base, "steps_beyond_terminated"):  # CartPole's warning counter after a termination
            state["steps_beyond_terminated"] = base.steps_beyond_terminated
    else:  # another task: its own numbers and arrays
        attributes = task_attributes(base)
        if not attributes:
            raise EnvError(f"cannot capture the state of {type(base).__name__} for exact resume: it holds no numbers "
                           "or numpy arrays as attributes")
        state.update(attributes)
        return state
    state.update(task_attributes(base, TASK_ARRAYS))
    return state


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore what `get_env_state` captured (the env must have been reset once)."""
    base: Any = env.unwrapped  # the task's own attributes (MuJoCo's model and data, a classic task's state)
    set_random_state(base.np_random, state["np_random"])
    limits = _time_limits(env)
    if limits and "elapsed_steps" in state:
        limits[0]._elapsed_steps = state["elapsed_steps"]
    for limit, elapsed in zip(limits[1:], state.get("inner_elapsed_steps", []), strict=False):
        limit._elapsed_steps = elapsed
    if "dm_control" in state:
        set_dm_control_state(dm_control_environment(base), state)
    elif "mujoco" in state:
        set_physics_state(base.model, base.data, state["mujoco"])
    elif "classic" in state:
        base.state = np.array(state["classic"])
        if "steps_beyond_terminated" in state:
            base.steps_beyond_terminated = state["steps_beyond_terminated"]
    set_task_attributes(base, state)


def to_env_action(action: np.ndarray, spec: EnvSpec) -> np.ndarray | int:
    """The engine's action `A` as the task takes it: rescaled from `[-1, 1]^A` to the bounds, or the one-hot's index."""
    if spec.discrete:
        return int(np.argmax(action))
    return spec.act_low + (action + 1.0) * 0.5 * (spec.act_high - spec.act_low)


def random_action(spec: EnvSpec, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random engine action `A` (exploration): uniform in `[-1, 1]^A`, or a uniform one-hot."""
    if spec.discrete:
        action = np.zeros(spec.act_dim, dtype=np.float32)
        action[rng.integers(spec.act_dim)] = 1.0
        return action
    return rng.uniform(-1.0, 1.0, size=spec.act_dim).astype(np.float32)
