"""Training from Python: `train` and `resume`, through the code `mbpo train` and `mbpo resume` run (the run's lock,
registry rows, checkpoints, events and stop signals), returning a `Run` handle."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import gymnasium as gym

from mbpo_cli.api.progress import LineReporter, say
from mbpo_cli.api.records import PathArg, Run, opened_registry, run_of_outcome
from mbpo_cli.api.run_config import ConfigArg, EnvArg, api_config, check_device, check_optional_packages
from mbpo_cli.config.errors import ConfigError, clip
from mbpo_cli.config.schema import Config
from mbpo_cli.runs.python_envs import EnvObject, python_env_id, register_for_run
from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.reporting import Reporter, SilentReporter
from mbpo_cli.runs.resume import resume_run
from mbpo_cli.runs.session import Outcome
from mbpo_cli.runs.start import RunMeta, start_or_resume, start_run

GROUP_KIND = "seeds"
"""The registry kind of a group that `train(group=...)` creates: runs to compare (as seeds of one setting)."""


class IfExists(str, Enum):
    """What training a run under a name that a run has already does: refuse, or continue that run."""

    ERROR = "error"
    RESUME = "resume"


def if_exists_choice(value: str, name: str = "if_exists=") -> IfExists:
    """`value` as an IfExists (a ConfigError naming the choices otherwise; `name` is how the error names it)."""
    try:
        return IfExists(value)
    except ValueError:
        raise ConfigError(f"{name}: expected error or resume, got {value!r}") from None


def start_training(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path, reporter: Reporter,
                   if_exists: IfExists = IfExists.ERROR) -> Outcome:
    """What `mbpo train` and :func:`train` run once the config is checked: a new run; with ``IfExists.RESUME`` the
    run named `meta.name` continued if it exists (`mbpo_cli.runs.start.start_or_resume`)."""
    if if_exists is IfExists.ERROR:
        return start_run(config, meta, registry, runs_dir, reporter)
    if meta.name is None:
        raise ConfigError("if_exists resume needs a run name (the run to find)")
    return start_or_resume(config, meta, registry, runs_dir, reporter)


def _shown(value: Any) -> str:
    """An argument as the recorded call shows it: an environment object by its registered id, a Config object by its
    type, anything else by its repr (cut to 200 characters)."""
    if isinstance(value, Config):
        return "<Config>"
    if isinstance(value, gym.Env) or callable(value):
        return f"<{python_env_id(value)}>"
    return clip(repr(value if not isinstance(value, os.PathLike) else os.fspath(value)))


def call_text(function: str, arguments: Mapping[str, Any]) -> str:
    """How the registry records a call from Python, in place of a command line:
    ``mbpo_cli.api.train(preset='hopper', steps=3000, sac__lr=0.0003)`` (the arguments given, None left out)."""
    shown = ", ".join(f"{key}={_shown(value)}" for key, value in arguments.items() if value is not None)
    return f"mbpo_cli.api.{function}({shown})"


def _reporter(progress: bool) -> Reporter:
    """A line per evaluation on stderr, or (`progress` off) only the messages."""
    return LineReporter() if progress else SilentReporter()


def train(
    preset: str | None = None,
    config: ConfigArg | None = None,
    env: EnvArg | None = None,
    *,
    runs_dir: PathArg = "runs",
    name: str | None = None,
    group: str | None = None,
    seed: int | None = None,
    steps: int | None = None,
    device: str | None = None,
    if_exists: str = "error",
    progress: bool = True,
    **overrides: Any,
) -> Run:
    """Train a run and record it in the registry of `runs_dir`, as `mbpo train` does; its handle.

    The config comes from one source: a bundled `preset`; a `config` (a `Config` object or a YAML file's path); or
    `env` alone (a gymnasium id, configured as `mbpo train --env` does). `env` may instead be an environment factory
    (a callable returning a gymnasium environment, called for each environment the run makes) or an environment
    instance (deep-copied for each), alone or on a preset or config whose task it replaces; the run then records
    it as ``python-factory/<module>.<name>`` or ``python-instance/<id>``, and resuming it or loading its policy in
    another process needs the same object again (`env=`); the command line cannot.

    Keyword overrides set config keys, ``__`` between a key's parts: ``sac__lr=3e-4`` is ``--set sac.lr=3e-4``;
    `seed`, `steps` and `device` win over them. `name` names the run (derived otherwise); `group` puts it in a
    registry group (created when missing), to compare with `mbpo compare`. ``if_exists="resume"`` continues the run
    called `name` if there is one (a finished one is left as it is), as `mbpo train --if-exists resume`. `progress`
    writes a line per evaluation on stderr.

    Bad arguments raise a ValueError (a ConfigError or EnvError) before anything is recorded. A stop signal (Ctrl-C,
    a notebook's interrupt) stops the run after the current step with a checkpoint: the handle's status is then
    interrupted, and :func:`resume` continues it.
    """
    folder = Path(runs_dir)
    choice = if_exists_choice(if_exists)
    if choice is IfExists.RESUME and name is None:
        raise ConfigError("if_exists resume needs name= (the run to find)")
    resolved = api_config(preset=preset, config=config, env=env, overrides=overrides, seed=seed, steps=steps,
                          device=device, say=say)
    check_optional_packages(resolved.config)
    command = call_text("train", {"preset": preset, "config": config, "env": env, "runs_dir": os.fspath(runs_dir),
                                  "name": name, "group": group, "seed": seed, "steps": steps, "device": device,
                                  **overrides})
    with Registry.open(folder) as registry:
        if registry.warning is not None:
            say(f"warning: {registry.warning}")
        if group is not None and registry.group_info(group) is None:
            registry.ensure_group(group, GROUP_KIND)
        meta = RunMeta(preset=resolved.preset, name=name, command=command, group=group)
        outcome = start_training(resolved.config, meta, registry, folder, _reporter(progress), choice)
    return run_of_outcome(outcome, folder)


def resume(run: str, runs_dir: PathArg = "runs", steps: int | None = None, *, env: EnvObject | None = None,
           device: str | None = None, progress: bool = True) -> Run:
    """Continue `run` (id, id prefix or name) from its newest good checkpoint, as `mbpo resume` does: the same run
    id, curves and registry rows; `steps` extends it to that many env steps; `device` trains it on another device.

    A run whose environment a Python factory or instance made needs `env`, the same object, in a process other than
    the one that trained it. Its handle once it stops (finished, or interrupted by a stop signal).
    """
    folder = Path(runs_dir)
    if device is not None:
        check_device(device, "device=")
    with opened_registry(folder, missing=f"no run {run!r}: ") as registry:
        info = registry.get_run(run)
        if env is not None:
            register_for_run(env, info.env_id, info.id)
        outcome = resume_run(registry, folder, info.id, _reporter(progress), steps=steps, device=device)
    return run_of_outcome(outcome, folder)
