"""A new run's config as `mbpo train` and :func:`mbpo_cli.api.train` resolve it and check it before anything is
written: one source (a bundled preset, a config file, a `Config` object, a gymnasium id, or an environment object
from Python), the overrides, then the device and the task (environment, agent, custom functions).

Keyword overrides name a config key with ``__`` between its parts: ``sac__lr=3e-4`` is ``--set sac.lr=3e-4``, its
value a Python value (``rollout__schedule=[1, 15, 1, 1]``), never text read as YAML.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch

from mbpo_cli.config.errors import ConfigError, shown
from mbpo_cli.config.migrate import current_key
from mbpo_cli.config.overrides import Override, apply, flag
from mbpo_cli.config.provenance import Origin, OriginKind, Provenance
from mbpo_cli.config.resolve import COMMAND_LINE, Resolved, exploration_warning, resolve
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config
from mbpo_cli.engine.env_wrappers import flattening_note
from mbpo_cli.engine.state import resolve_device
from mbpo_cli.engine.task import check_task, task_facts
from mbpo_cli.runs.python_envs import EnvObject, register_python_env
from mbpo_cli.runs.tensorboard import summary_writer
from mbpo_cli.runs.wandb_tracking import wandb_module

Say: TypeAlias = Callable[[str], None]
"""Where a note for the user goes (one line: the termination a task gets, a run that would only explore)."""
ConfigArg: TypeAlias = Config | str | os.PathLike[str]
"""`train(config=...)`: a `Config` object, or the path of a YAML config file."""
EnvArg: TypeAlias = str | EnvObject
"""`train(env=...)`: a gymnasium environment id, an environment factory, or an environment instance."""
CALLER = "train()"
"""What errors in `mbpo_cli.api.train`'s arguments name as their source."""
KEY_SEPARATOR = "__"
"""What separates the parts of a config key in a keyword override (`sac__lr`)."""


def keyword_overrides(overrides: Mapping[str, Any]) -> list[Override]:
    """Keyword overrides (`sac__lr=3e-4`) as overrides of their dotted keys (`sac.lr`), each under its name today
    (see `mbpo_cli.config.migrate`); the keys themselves are checked when the config is built."""
    result = []
    for name, value in overrides.items():
        path = name.split(KEY_SEPARATOR)
        if not all(path):
            raise ConfigError(f"{CALLER}: {shown(name)}: a config key is SECTION{KEY_SEPARATOR}KEY, e.g. "
                              f"sac{KEY_SEPARATOR}lr=3e-4 for sac.lr")
        result.append(Override(current_key(path), value, Origin(OriginKind.SET, name)))
    return result


def _argument_overrides(seed: int | None, steps: int | None, device: str | None) -> list[Override]:
    """The overrides that `train()`'s own `seed`, `steps` and `device` stand for, those given."""
    given = (("train.seed", seed, "seed="), ("train.steps", steps, "steps="),
             ("train.device", device, "device="))
    return [flag(key, value, name) for key, value, name in given if value is not None]


def api_config(*, preset: str | None, config: ConfigArg | None, env: EnvArg | None, overrides: Mapping[str, Any],
               seed: int | None, steps: int | None, device: str | None, say: Say) -> Resolved:
    """The checked config of `mbpo_cli.api.train` (see its docstring): its own arguments win over the keyword
    overrides. An environment object is registered (see `mbpo_cli.runs.python_envs`) and the config names it."""
    if preset is not None and config is not None:
        raise ConfigError(f"{CALLER}: choose one of preset= and config=")
    typed = [*keyword_overrides(overrides), *_argument_overrides(seed, steps, device)]
    env_id = None
    if isinstance(env, str):
        if preset is not None or config is not None:
            raise ConfigError(f"{CALLER}: env= {shown(env)} is a task of its own, with defaults chosen for it: choose "
                              f"one of preset=, config= and env=, or set the task of a preset with env{KEY_SEPARATOR}"
                              f"id={shown(env)}")
        env_id = env
    elif env is not None:
        env_id = register_python_env(env)
        if preset is not None or config is not None:  # the source's env.kwargs were its own task's
            typed = [flag("env.id", env_id, "env"), flag("env.kwargs", {}, "env"), *typed]
            env_id = None
    if isinstance(config, Config):
        data = apply(config.to_dict(), typed)
        return _checked(Resolved(build_config(data, CALLER), Provenance(), None), None, say)
    config_file = None if config is None else Path(config)
    return checked_config(preset=preset, config_file=config_file, env_id=env_id, typed=typed, caller=CALLER, say=say)


def checked_config(*, preset: str | None = None, config_file: Path | None = None, env_id: str | None = None,
                   sets: Sequence[str] | None = None, typed: Sequence[Override] = (), seed: int | None = None,
                   steps: int | None = None, device: str | None = None, algo: str | None = None,
                   tensorboard: bool | None = None, track: bool | None = None, caller: str = COMMAND_LINE,
                   say: Say) -> Resolved:
    """Resolve the config (`mbpo_cli.config.resolve.resolve`, same arguments) and check the task (device,
    environment, agent, custom functions) before anything is written.

    A task given by its id alone says through `say` which termination it gets and why (unless an override set it);
    a Dict or Tuple observation, that it is flattened and how; a run that would only explore (steps <= init_steps)
    is warned about through `say`.
    """
    facts, note = None, None
    if env_id is not None and preset is None and config_file is None:
        facts, note = task_facts(env_id)
    resolved = resolve(preset=preset, config_file=config_file, env_id=env_id, env_facts=facts, overrides=sets,
                       seed=seed, steps=steps, device=device, algo=algo, tensorboard=tensorboard, track=track,
                       typed=typed, caller=caller)
    return _checked(resolved, note, say)


def _checked(resolved: Resolved, note: str | None, say: Say) -> Resolved:
    """`resolved`, its device and task checked; its notes said."""
    check_device(resolved.config.train.device, device_source(resolved.provenance))
    spec = check_task(resolved.config)
    if note is not None and resolved.provenance.of("env.termination").kind is OriginKind.ENV:
        say(note)
    if spec.flattened:
        say(flattening_note(resolved.config.env.id, spec.flattened))
    warning = exploration_warning(resolved.config)
    if warning is not None:
        say(warning)
    return resolved


def device_source(provenance: Provenance) -> str:
    """How an error names where `train.device` came from: the flag (`--device`) or argument, or `train.device` (a
    preset, a config file or --set)."""
    origin = provenance.of("train.device")
    return origin.name if origin.kind is OriginKind.FLAG else "train.device"


def check_device(name: str, source: str = "--device") -> torch.device:
    """The torch device `name` stands for on this machine; a ConfigError (exit 2) for a device it does not have,
    `source` naming where the value came from (`--device`, or `train.device` from a config file or --set)."""
    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(f"{source} {name}: {error}") from None


def check_optional_packages(config: Config) -> None:
    """A ConfigError naming the extra to install when the config logs to TensorBoard or W&B without its package
    (before the registry is opened)."""
    if config.train.tensorboard:
        summary_writer("train.tensorboard")
    if config.train.track:
        wandb_module("train.track")
