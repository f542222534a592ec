"""The parts of an environment's state that exact resume needs beyond gymnasium's own: a task's random generator of
either numpy kind, MuJoCo's physics, and a dm_control task inside shimmy's compatibility environment.

Every value is an array or plain Python data kept at the top level of the state `mbpo_cli.engine.envs.get_env_state`
returns, so a checkpoint stores it as tensors and plain values (`torch.load(..., weights_only=True)`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

RandomGenerator = np.random.Generator | np.random.RandomState
"""A task's random generator: gymnasium's `Generator`, or the legacy `RandomState` (dm_control's, and many older
tasks')."""


def random_state(rng: RandomGenerator) -> dict[str, Any]:
    """The state of `rng`: its bit generator's state for a `Generator`, `get_state(legacy=False)` for a
    `RandomState` (a mapping with the MT19937 key, position and cached Gaussian)."""
    if isinstance(rng, np.random.RandomState):
        return dict(rng.get_state(legacy=False))
    return dict(rng.bit_generator.state)


def set_random_state(rng: RandomGenerator, state: dict[str, Any]) -> None:
    """Restore what :func:`random_state` captured into `rng` (a generator of the same kind)."""
    if isinstance(rng, np.random.RandomState):
        inner = state["state"]
        rng.set_state({**state, "state": {"key": np.asarray(inner["key"], dtype=np.uint32), "pos": int(inner["pos"])},
                       "has_gauss": int(state["has_gauss"]), "gauss": float(state["gauss"])})
        return
    rng.bit_generator.state = state


def physics_state(model: Any, data: Any) -> np.ndarray:
    """MuJoCo's `mj_getState(mjSTATE_INTEGRATION)` of `model` and `data` (qpos, qvel, act, time, controls, warm
    start, ...): what makes the continued trajectory bitwise identical."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, state, spec)
    return state


def set_physics_state(model: Any, data: Any, state: np.ndarray) -> None:
    """Restore what :func:`physics_state` captured, and recompute the derived quantities (`mj_forward`)."""
    import mujoco

    mujoco.mj_setState(model, data, np.asarray(state, dtype=np.float64), mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(model, data)


def dm_control_environment(base: Any) -> Any | None:
    """The dm_control environment that shimmy's compatibility environment `base` wraps (its `_env`, with a MuJoCo
    `physics`), or None for another environment."""
    inner = vars(base).get("_env")  # vars: shimmy's __getattr__ would look attributes up in dm_control's environment
    physics = getattr(inner, "physics", None)
    return inner if hasattr(physics, "model") and hasattr(physics, "data") else None


DM_CONTROL_COUNTERS = ("_step_count", "_reset_next_step")
"""The attributes of dm_control's environment that change from step to step besides the physics and the task's
random state: its step counter (the episode ends at its step limit) and whether the next step resets."""


def dm_control_state(environment: Any) -> dict[str, Any]:
    """The physics and counters of a dm_control environment (its task's random state is the env's `np_random`)."""
    physics = environment.physics
    state: dict[str, Any] = {"dm_control": physics_state(physics.model.ptr, physics.data.ptr)}
    for name in DM_CONTROL_COUNTERS:
        if hasattr(environment, name):
            state[f"dm_control{name}"] = getattr(environment, name)
    return state


def set_dm_control_state(environment: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`dm_control_state` captured."""
    physics = environment.physics
    set_physics_state(physics.model.ptr, physics.data.ptr, state["dm_control"])
    for name in DM_CONTROL_COUNTERS:
        if f"dm_control{name}" in state:
            setattr(environment, name, state[f"dm_control{name}"])


TASK_ARRAYS = ("goal",)
"""Array attributes of a physics task that hold what its episode is about beyond its physics, chosen at reset: the
goal of a goal-conditioned task (gymnasium-robotics' Fetch and maze tasks keep it in `goal`)."""

GYMNASIUM_ATTRIBUTES = frozenset({"_np_random", "_np_random_seed"})
"""`gymnasium.Env`'s own attributes: the random generator is captured as such, and its seed is not state."""


def _capturable(value: object) -> bool:
    """A number or a numeric array: what a checkpoint holds exactly (as a tensor or a plain value)."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    return isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating)


def task_attributes(base: Any, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The task's own numbers and numeric arrays among its instance attributes (only `names` when given), as
    `attribute:<name>` (a numpy scalar as a 0-d array under `scalar:<name>`)."""
    found: dict[str, Any] = {}
    for name, value in vars(base).items():
        if name in GYMNASIUM_ATTRIBUTES or (names is not None and name not in names) or not _capturable(value):
            continue
        if isinstance(value, np.generic):
            found[f"scalar:{name}"] = np.asarray(value)
        else:
            found[f"attribute:{name}"] = value.copy() if isinstance(value, np.ndarray) else value
    return found


def set_task_attributes(base: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`task_attributes` captured: an array into the task's own array where it has one of that
    shape and dtype (a view into the simulator stays a view), otherwise as a new value."""
    for key, value in state.items():
        kind, _, name = key.partition(":")
        if kind == "scalar":
            setattr(base, name, np.asarray(value)[()])
        elif kind == "attribute":
            current = vars(base).get(name)
            array = np.asarray(value) if isinstance(current, np.ndarray) else value
            if isinstance(current, np.ndarray) and current.shape == array.shape and current.dtype == array.dtype:
                np.copyto(current, array)
            else:
                setattr(base, name, np.array(array) if isinstance(current, np.ndarray) else array)
