"""A run's environment made by a Python object rather than by its config: an environment factory (any callable that
returns a gymnasium environment, a class included) or an environment instance, handed to
`mbpo_cli.api.train(env=...)`.

The object is registered with gymnasium, in this process only, under an id that names it in a namespace of its own:
``python-factory/<module>.<name>`` (``python-factory/__main__.make_pendulum``) or ``python-instance/<its id>``
(``python-instance/InvertedPendulum-v5``, else its class's name). The run's config records that id, so the engine
makes the environment as it makes any gymnasium task, and the record says where the environment came from. The
config cannot rebuild it in another process: resuming the run or loading its policy there needs the same object
handed again (`mbpo_cli.api.resume(RUN, env=...)`, `mbpo_cli.api.load_policy(RUN, env=...)`), and the command line,
which cannot hand one, refuses with a line that says so (:func:`check_rebuildable`).

A factory is called once for each environment a run makes (training, evaluation, the checks at start), with the
run's ``env.kwargs``, and must return a new environment each time. An instance is deep-copied for each: the instance
itself is never stepped.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeAlias

import gymnasium as gym
from gymnasium.envs.registration import parse_env_id

from mbpo_cli.config.errors import clip
from mbpo_cli.engine.envs import EnvError

EnvObject: TypeAlias = Callable[..., gym.Env] | gym.Env
"""An environment given as a Python object: a factory, or an instance."""


class PythonEnv(str, Enum):
    """The gymnasium namespace of an environment made by a Python object: which kind of object made it."""

    FACTORY = "python-factory"
    INSTANCE = "python-instance"


def python_env_kind(env_id: str) -> PythonEnv | None:
    """Which kind of Python object made the environment `env_id`, or None for an environment its id makes."""
    try:
        namespace = parse_env_id(env_id)[0]
    except gym.error.Error:
        return None
    return next((kind for kind in PythonEnv if kind.value == namespace), None)


def _name_part(text: str) -> str:
    """`text` as a gymnasium name allows it (letters, digits, `_`, `.` and `-`), `<lambda>` as `lambda`."""
    return re.sub(r"[^\w.-]", "", text).strip(".-") or "env"


def python_env_id(env: object) -> str:
    """The id that environment object `env` is registered under (see the module docstring); an EnvError when it
    is neither a gymnasium environment nor a callable."""
    if isinstance(env, gym.Env):
        spec = env.spec
        name = spec.id if spec is not None else type(env.unwrapped).__name__
        return f"{PythonEnv.INSTANCE.value}/{_name_part(name.split(':')[-1].split('/')[-1])}"
    if callable(env):
        module = getattr(env, "__module__", None) or "unknown"
        name = getattr(env, "__qualname__", None) or type(env).__qualname__
        return f"{PythonEnv.FACTORY.value}/{_name_part(f'{module}.{name}')}"
    raise EnvError(f"env: expected a gymnasium environment id, an environment factory (a callable returning an "
                   f"environment) or an environment instance, got a {type(env).__name__}")


def _from_factory(factory: Callable[..., gym.Env], env_id: str) -> Callable[..., gym.Env]:
    """Gymnasium's entry point for a factory: the factory's environment, checked to be one."""

    def make(**kwargs: Any) -> gym.Env:
        env = factory(**kwargs)
        if not isinstance(env, gym.Env):
            raise EnvError(f"environment '{env_id}': the factory returned a {type(env).__name__}, not a gymnasium "
                           "environment")
        return env

    return make


def _copies_of(instance: gym.Env, env_id: str) -> Callable[..., gym.Env]:
    """Gymnasium's entry point for an instance: a deep copy of it, which must take no `env.kwargs`; an EnvError at
    once when the instance cannot be copied."""
    try:
        copy.deepcopy(instance)
    except Exception as err:  # whatever a user's environment does when copied: say what, in one line
        first = str(err).strip().splitlines()
        raise EnvError(f"env: cannot copy this environment instance ({type(err).__name__}"
                       f"{': ' + clip(first[0]) if first else ''}), and a run makes several environments: pass a "
                       "factory instead, e.g. env=lambda: gymnasium.make(...)") from None

    def make(**kwargs: Any) -> gym.Env:
        if kwargs:
            raise EnvError(f"environment '{env_id}': env.kwargs ({', '.join(kwargs)}) cannot configure an "
                           "environment instance: pass a factory that takes them")
        return copy.deepcopy(instance)

    return make


def register_python_env(env: EnvObject) -> str:
    """Register environment object `env` with gymnasium in this process (in place of an object registered before
    under the same id) and return its id."""
    env_id = python_env_id(env)
    make = _copies_of(env, env_id) if isinstance(env, gym.Env) else _from_factory(env, env_id)
    gym.registry.pop(env_id, None)
    gym.register(env_id, entry_point=make, disable_env_checker=True)
    return env_id


def check_rebuildable(env_id: str, run_id: str) -> None:
    """An EnvError when run `run_id`'s environment `env_id` was made by a Python object that this process was not
    handed: its config cannot rebuild it."""
    kind = python_env_kind(env_id)
    if kind is None or env_id in gym.registry:
        return
    what = "factory" if kind is PythonEnv.FACTORY else "environment instance"
    raise EnvError(f"run {run_id}'s environment {env_id} was made by a Python {what} handed to mbpo_cli.api.train "
                   f"(env=...), which its config cannot rebuild: hand the same {what} again from Python, "
                   f"mbpo_cli.api.resume('{run_id}', env=...) or mbpo_cli.api.load_policy('{run_id}', env=...)")


def register_for_run(env: EnvObject, env_id: str, run_id: str) -> None:
    """Register `env` again for run `run_id`, whose environment is `env_id`: an EnvError when that environment is made
    from the run's config (there is nothing to hand), or when `env` is registered under another id than the run's
    (another factory, or an instance of another task)."""
    if python_env_kind(env_id) is None:
        raise EnvError(f"env=: run {run_id}'s environment {env_id} is made from its config; env= is only for runs "
                       "whose environment a Python factory or instance made")
    given = python_env_id(env)
    if given != env_id:
        raise EnvError(f"env=: run {run_id}'s environment is {env_id}, this one would be {given}: hand the same "
                       "factory or an instance of the same task")
    register_python_env(env)
