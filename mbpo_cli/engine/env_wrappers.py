"""The wrappers around a run's environment: those of `env.wrappers`, in order, then gymnasium's
`FlattenObservation` when the observation they leave is a Dict or a Tuple (the model and the agents take a flat
vector).

Both follow from the recorded config alone, so every place that makes the environment (training, evaluation,
export, diagnostics, resume) applies the same ones. The flattening is gymnasium's (`gymnasium.spaces.flatten`):
the parts in the space's order (a Dict's keys as its space orders them), each part flattened, a Discrete one
one-hot; :func:`flattened_parts` says which slice of the flat vector holds which part.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium.spaces import Dict as DictSpace
from gymnasium.spaces import Tuple as TupleSpace
from gymnasium.spaces import flatdim
from gymnasium.wrappers import FlattenObservation

from mbpo_cli.config.env_wrappers import WrapperLookupError, gymnasium_wrapper
from mbpo_cli.config.schema import EnvConfig, WrapperConfig
from mbpo_cli.engine.errors import EnvError


@dataclass(frozen=True)
class ObservationPart:
    """One part of a flattened Dict or Tuple observation: its key path and its slice of the flat vector."""

    key: str
    """The part's keys (a Tuple's indices) from the top, joined with dots: `position`, `robot.joints`, `0`."""
    start: int
    """Its first index in the flat observation."""
    stop: int
    """One past its last index."""


class AutoFlattenObservation(FlattenObservation):
    """Gymnasium's `FlattenObservation`, put around a Dict or Tuple observation by `mbpo` itself; `parts` says where
    each part of the original observation lies in the flat one."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.parts = observation_parts(env.observation_space)
        """The original observation's parts, in the flat vector's order."""


def observation_parts(space: gym.Space[Any]) -> tuple[ObservationPart, ...]:
    """The parts of `space` as `gymnasium.spaces.flatten` lays them out (a space that is not a Dict or Tuple is one
    part, `obs`)."""
    sized: list[tuple[str, int]] = []

    def visit(node: gym.Space[Any], path: str) -> None:
        if isinstance(node, DictSpace):
            for key, child in node.spaces.items():
                visit(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, TupleSpace):
            for index, child in enumerate(node.spaces):
                visit(child, f"{path}.{index}" if path else str(index))
        else:
            sized.append((path or "obs", flatdim(node)))

    visit(space, "")
    parts, start = [], 0
    for key, size in sized:
        parts.append(ObservationPart(key, start, start + size))
        start += size
    return tuple(parts)


def describe_parts(parts: tuple[ObservationPart, ...]) -> str:
    """`position [0:3], velocity [3:5]`: where each part lies in the flat observation."""
    return ", ".join(f"{part.key} [{part.start}:{part.stop}]" for part in parts)


def flattened_parts(env: gym.Env) -> tuple[ObservationPart, ...]:
    """The parts of the observation that `mbpo` flattened around `env`, or () when it did not flatten it."""
    wrapper: Any = env
    while isinstance(wrapper, gym.Wrapper):
        if isinstance(wrapper, AutoFlattenObservation):
            return wrapper.parts
        wrapper = wrapper.env
    return ()


def unflattened_space(env: gym.Env) -> gym.Space[Any]:
    """The observation space that `mbpo` flattened around `env` (a Dict or Tuple); `env`'s own when it did not."""
    wrapper: Any = env
    while isinstance(wrapper, gym.Wrapper):
        if isinstance(wrapper, AutoFlattenObservation):
            return wrapper.env.observation_space
        wrapper = wrapper.env
    return env.observation_space


def wrapper_class(ref: str, where: str = "env.wrappers") -> type[gym.Wrapper]:
    """The wrapper class `ref` names (gymnasium's by name, or `module:Class` imported from the working directory or
    the installed packages); an EnvError starting with `where` when it names none."""
    if ":" not in ref:
        try:
            return gymnasium_wrapper(ref)
        except WrapperLookupError as err:
            raise EnvError(f"{where}: {err}") from None
    from mbpo_cli.models.termination.custom import working_directory_importable  # torch: not in the video child

    module_name, _, name = ref.partition(":")
    working_directory_importable()
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import-time failure of user code is the user's to fix
        first = str(err).strip().splitlines()
        raise EnvError(f"{where}: cannot import {module_name!r} (from the working directory or the installed "
                       f"packages): {type(err).__name__}{': ' + first[0] if first else ''}") from None
    found = getattr(module, name, None)
    if not (isinstance(found, type) and issubclass(found, gym.Wrapper)):
        kind = "class" if isinstance(found, type) else type(found).__name__
        what = f"{module_name!r} has no {name!r}" if found is None else f"{ref} is a {kind}"
        raise EnvError(f"{where}: {what}, not a gymnasium.Wrapper subclass")
    return found


def wrap(env: gym.Env, wrapper: WrapperConfig, index: int) -> gym.Env:
    """`env` inside the wrapper `wrapper` (item `index` of `env.wrappers`); an EnvError naming it when it cannot
    wrap `env` (bad kwargs, a space it does not take)."""
    where = f"env.wrappers[{index}] ({wrapper.name})"
    cls = wrapper_class(wrapper.name, where)
    try:
        return cls(env, **{key: _as_tuples(value) for key, value in wrapper.kwargs.items()})
    except Exception as err:  # a wrapper's constructor refusing the kwargs or the space is the config's to fix
        first = str(err).strip().splitlines()
        bad = "bad kwargs" if isinstance(err, TypeError) else "cannot wrap the task"
        raise EnvError(f"{where}: {bad}: {type(err).__name__}{': ' + first[0] if first else ''}") from None


def _as_tuples(value: Any) -> Any:
    """A YAML list as a tuple (gymnasium's wrappers take shapes and key sequences as tuples), recursively."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


def wrapped(env: gym.Env, config: EnvConfig) -> gym.Env:
    """`env` inside the wrappers of `config.wrappers`, in order, then flattened when its observation is a Dict or a
    Tuple (:class:`AutoFlattenObservation`); `env` is closed when a wrapper fails (EnvError)."""
    try:
        for index, wrapper in enumerate(config.wrappers):
            env = wrap(env, wrapper, index)
    except EnvError:
        env.close()
        raise
    if isinstance(env.observation_space, DictSpace | TupleSpace):
        env = AutoFlattenObservation(env)
    return env


def flattening_note(env_id: str, parts: tuple[ObservationPart, ...]) -> str:
    """The line that tells the user how the observation of `env_id` was flattened (said once, when a run starts)."""
    return (f"env: {env_id}'s observation is flattened (gymnasium's FlattenObservation) to {parts[-1].stop} values: "
            f"{describe_parts(parts)}; eval and export take it flattened the same way")
