"""The run config from the command line: exactly one source (a bundled preset, a config file, or the defaults of
`--env ENV_ID`), then `--algo`, the `--set` overrides and the flags (`--tensorboard`, `--seed`, `--steps`,
`--device`) as typed overrides, applied once; with where each value came from and the preset it builds on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbpo_cli.config.env_defaults import ENV_STEPS, TaskFacts, env_defaults
from mbpo_cli.config.errors import ConfigError, shown
from mbpo_cli.config.files import read_config_file, read_preset
from mbpo_cli.config.migrate import migrate
from mbpo_cli.config.overrides import Override, apply, flag, parse_sets
from mbpo_cli.config.provenance import Origin, OriginKind, Provenance
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config

BASELINE_UPDATES = 1
"""G of the model-free baseline when `--algo model-free` (or `--algo sac`) switches an MBPO source."""
ALGO_CHOICES = ("mbpo", "model-free", "sac", "dhmbpo")
"""`--algo` values: MBPO, the base agent without a model, SAC without a model, or Double Horizon MBPO (the source's
env and termination, the `dhmbpo` section's settings)."""
COMMAND_LINE = "command line"
"""The source an error names for a config that the command line's overrides made invalid."""


@dataclass(frozen=True)
class Resolved:
    """A run's config as the command line resolved it."""

    config: Config
    provenance: Provenance
    """Where each of its values came from."""
    preset: str | None
    """The bundled preset it builds on: `--preset`'s, or the nearest one in the `base:` chain of a `--config` file;
    None for `--env`."""


@dataclass(frozen=True)
class Source:
    """The one source of a run's config, read: its raw data, the name errors give it, who set what, its preset."""

    data: dict[str, Any]
    name: str
    provenance: Provenance
    preset: str | None


def resolve(
    *,
    preset: str | None = None,
    config_file: Path | None = None,
    env_id: str | None = None,
    env_facts: TaskFacts | None = None,
    overrides: Sequence[str] | None = None,
    seed: int | None = None,
    steps: int | None = None,
    device: str | None = None,
    algo: str | None = None,
    tensorboard: bool | None = None,
    track: bool | None = None,
    typed: Sequence[Override] = (),
    caller: str = COMMAND_LINE,
) -> Resolved:
    """The run config from exactly one source (preset, file or env id) plus the command line's overrides.

    The source is validated alone first (its errors name its file), then with the overrides (errors name the
    command line): `--algo`'s, then each `--set` in order, then the flags, so a flag wins over a `--set` of its key.
    `--algo model-free` on an MBPO source trains the configured base agent without a model at the standard
    ratio of one update per env step (G = 1) unless `agent.updates_per_step` is set; `--algo sac` does the same
    with SAC as the agent; `--algo dhmbpo` trains Double Horizon MBPO on the source's task with its `dhmbpo` section.

    `typed` overrides hold Python values already (the keyword overrides of `mbpo_cli.api.train`) and are applied
    after the `--set` ones; `caller` is what errors in the overrides name as their source.
    """
    if len([x for x in (preset, config_file, env_id) if x is not None]) > 1:
        raise ConfigError("choose one of --preset, --config and --env")
    sets = None
    if env_id is not None:
        if env_facts is None:
            raise ConfigError(f"--env {env_id}: the environment's facts are needed")
        sets = [*parse_sets(overrides or []), *typed]
        source = _env_source(env_id, env_facts, _budget(steps, sets))
    else:
        source = _file_source(preset, config_file)
    data = migrate(source.data, source.name)
    algo_name = None if algo is None else _algo_name(algo)
    config = build_config(data, source.name)
    if sets is None:
        sets = [*parse_sets(overrides or []), *typed]
    extra = [*_algo_overrides(algo_name, data, sets), *sets, *_flags(tensorboard, track, seed, steps, device)]
    if extra:
        config = build_config(apply(data, extra), caller)
    provenance = source.provenance
    for override in extra:
        provenance = provenance.with_value(override.path, override.value, override.origin)
    return Resolved(config, provenance, source.preset)


def resolve_config(
    *,
    preset: str | None = None,
    config_file: Path | None = None,
    env_id: str | None = None,
    env_facts: TaskFacts | None = None,
    overrides: Sequence[str] | None = None,
    seed: int | None = None,
    steps: int | None = None,
    device: str | None = None,
    algo: str | None = None,
    tensorboard: bool | None = None,
    track: bool | None = None,
) -> Config:
    """The run config alone of :func:`resolve` (same arguments)."""
    return resolve(preset=preset, config_file=config_file, env_id=env_id, env_facts=env_facts, overrides=overrides,
                   seed=seed, steps=steps, device=device, algo=algo, tensorboard=tensorboard, track=track).config


def _file_source(preset: str | None, config_file: Path | None) -> Source:
    """The source of `--preset NAME` or `--config FILE` (ConfigError when neither is given)."""
    if preset is not None:
        file = read_preset(preset)
    elif config_file is not None:
        file = read_config_file(config_file)
    else:
        raise ConfigError("choose a task: --preset NAME, --config FILE or --env ENV_ID")
    return Source(file.data, str(file.path), file.provenance, preset if preset is not None else file.base_preset)


def _env_source(env_id: str, facts: TaskFacts, steps: int) -> Source:
    """The source of `--env ENV_ID`: defaults from the task's facts for a budget of `steps`."""
    name = f"--env {env_id}"
    data = env_defaults(env_id, facts, steps)
    return Source(data, name, Provenance().with_data(data, Origin(OriginKind.ENV, name)), None)


def _budget(steps: int | None, sets: Sequence[Override]) -> int:
    """The `train.steps` a run from `--env` will have: `--steps`, else the last `--set train.steps=N`, else
    :data:`ENV_STEPS` (a value that is not a positive integer is refused later, by validation)."""
    if steps is not None:
        return steps
    for override in reversed(sets):
        value = override.value
        if override.path == ("train", "steps") and isinstance(value, int) and not isinstance(value, bool):
            return value
    return ENV_STEPS


def _algo_name(algo: str) -> str:
    """An `--algo` value checked (`model_free` is `model-free`)."""
    algo = algo.replace("_", "-")
    if algo not in ALGO_CHOICES:
        raise ConfigError(f"--algo: expected {', '.join(ALGO_CHOICES)}, got {shown(algo)}")
    return algo


def _algo_overrides(algo: str | None, data: Mapping[str, Any], sets: Sequence[Override]) -> list[Override]:
    """The overrides `--algo` stands for (see :func:`resolve`)."""
    if algo is None:
        return []
    if algo in ("mbpo", "dhmbpo"):
        return [flag("algo", algo, "--algo")]
    result = [flag("algo", "model_free", "--algo")] + ([flag("agent.name", "sac", "--algo")] if algo == "sac" else [])
    sets_updates = any(o.path == ("agent", "updates_per_step") for o in sets)
    if data.get("algo", "mbpo") == "mbpo" and not sets_updates:
        result.append(flag("agent.updates_per_step", BASELINE_UPDATES, "--algo"))
    return result


def _flags(tensorboard: bool | None, track: bool | None, seed: int | None, steps: int | None,
           device: str | None) -> list[Override]:
    """The overrides the typed flags stand for, those given."""
    given = (("train.tensorboard", tensorboard, "--tensorboard"), ("train.track", track, "--track"),
             ("train.seed", seed, "--seed"),
             ("train.steps", steps, "--steps"), ("train.device", device, "--device"))
    return [flag(key, value, name) for key, value, name in given if value is not None]


def exploration_warning(config: Config) -> str | None:
    """A line for the user when the whole run is random exploration (`train.steps <= train.init_steps`: the
    agent never trains), else None."""
    train = config.train
    if train.steps > train.init_steps:
        return None
    return (f"warning: train.steps {train.steps:,} <= train.init_steps {train.init_steps:,}: every step is "
            "random exploration and the agent never trains; lower train.init_steps (--set train.init_steps=N) or "
            "raise --steps")
