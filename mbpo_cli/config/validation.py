"""A validated Config from raw data: old keys migrated, values coerced to their fields' types, then every rule
checked: each field's own rules (declared beside it in the schema, `mbpo_cli.config.rules`) and the rules that join
several fields (below). The first problem is one ConfigError: `<source>: <dotted key>: <what is wrong>`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from mbpo_cli.config.coerce import coerce_section, describe
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.migrate import migrate
from mbpo_cli.config.rules import algo_of, rules_of
from mbpo_cli.config.schema import Config


class Problem(NamedTuple):
    """A broken rule: the dotted key it is reported under, and what is wrong (the error message after the key)."""

    key: str
    message: str


def build_config(data: Mapping[str, Any], source: str = "config") -> Config:
    """A validated Config from raw data; every problem raises ConfigError naming `source` and key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level: expected a mapping, got {describe(data)}")
    config: Config = coerce_section(Config, migrate(data, source), source, prefix="")
    problem = next(problems(config), None)
    if problem is not None:
        raise ConfigError(f"{source}: {problem.key}: {problem.message}")
    return config


def problems(config: Config) -> Iterator[Problem]:
    """Every broken rule of a coerced config: the fields' own rules in the schema's order, then the rules that join
    fields (DHMBPO's only for algo: dhmbpo)."""
    yield from _field_problems(config, config, "")
    for rule in JOINT_RULES + (DHMBPO_RULES if config.algo == "dhmbpo" else ()):
        problem = rule(config)
        if problem is not None:
            yield problem


def _field_problems(section: Any, config: Config, prefix: str) -> Iterator[Problem]:
    """The broken rules of the fields of `section` (a dataclass at dotted `prefix`) and of its sections (also those
    in a list, as `env.wrappers[0].`)."""
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        algo = algo_of(item)
        if algo is not None and config.algo != algo:
            continue
        if dataclasses.is_dataclass(value):
            yield from _field_problems(value, config, f"{prefix}{item.name}.")
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):  # sections
            for i, listed in enumerate(value):
                yield from _field_problems(listed, config, f"{prefix}{item.name}[{i}].")
        elif value is not None:
            for rule in rules_of(item):
                message = rule.problem(value)
                if message is not None:
                    yield Problem(f"{prefix}{item.name}", message)
                    break


# ---------------------------------------------------------------------------------------------
# Rules that join fields
# ---------------------------------------------------------------------------------------------

JointRule = Callable[[Config], Problem | None]
"""A rule over several values of a config: the problem, or None when it holds."""


def elites_within_the_ensemble(c: Config) -> Problem | None:
    """model.elites <= model.ensemble_size."""
    if c.model.elites > c.model.ensemble_size:
        return Problem("model.elites", f"{c.model.elites} elites > ensemble_size {c.model.ensemble_size}")
    return None


def weight_decay_per_layer(c: Config) -> Problem | None:
    """model.weight_decay: one value per hidden layer and one for the output layer."""
    if len(c.model.weight_decay) != c.model.layers + 1:
        return Problem("model.weight_decay",
                       f"needs layers + 1 = {c.model.layers + 1} values, got {len(c.model.weight_decay)}")
    return None


def early_stopping_settings(c: Config) -> Problem | None:
    """model.patience and model.improvement >= 0 (reported together, under model.patience)."""
    if c.model.patience < 0 or c.model.improvement < 0:
        return Problem("model.patience", "patience and improvement must be >= 0")
    return None


def mbpo_explores_first(c: Config) -> Problem | None:
    """MBPO's model first trains on random steps: train.init_steps >= 1 with algo: mbpo."""
    if c.algo == "mbpo" and c.train.init_steps < 1:
        return Problem("train.init_steps", "must be at least 1 for mbpo: the model first trains on the random steps")
    return None


JOINT_RULES: tuple[JointRule, ...] = (elites_within_the_ensemble, weight_decay_per_layer, early_stopping_settings,
                                      mbpo_explores_first)
"""The rules that join fields, checked for every algorithm."""


def target_critics_within_the_ensemble(c: Config) -> Problem | None:
    """dhmbpo.target_members <= dhmbpo.critic_members."""
    d = c.dhmbpo
    if d.target_members > d.critic_members:
        return Problem("dhmbpo.target_members", f"{d.target_members} > critic_members {d.critic_members}")
    return None


def equal_blocks_per_member(c: Config) -> Problem | None:
    """dhmbpo.batch_size and dhmbpo.distribution_starts: multiples of dhmbpo.model.members."""
    d, members = c.dhmbpo, c.dhmbpo.model.members
    for key, value in (("batch_size", d.batch_size), ("distribution_starts", d.distribution_starts)):
        if value % members:
            return Problem(f"dhmbpo.{key}", f"must be a multiple of dhmbpo.model.members ({members}): each member "
                                            f"takes an equal block of the batch, got {value}")
    return None


def dynamics_values_per_layer(c: Config) -> Problem | None:
    """dhmbpo.model.norm_eps (positive) and dropout (in [0, 1)): one per hidden layer; weight_decay (>= 0): one
    more, for the output layer."""
    m = c.dhmbpo.model
    if len(m.norm_eps) != m.layers or any(e <= 0 for e in m.norm_eps):
        return Problem("dhmbpo.model.norm_eps", f"needs layers = {m.layers} positive values, got {list(m.norm_eps)}")
    if len(m.dropout) != m.layers or any(not 0.0 <= p < 1.0 for p in m.dropout):
        return Problem("dhmbpo.model.dropout", f"needs layers = {m.layers} values in [0, 1), got {list(m.dropout)}")
    if len(m.weight_decay) != m.layers + 1 or any(w < 0 for w in m.weight_decay):
        return Problem("dhmbpo.model.weight_decay",
                       f"needs layers + 1 = {m.layers + 1} values >= 0, got {list(m.weight_decay)}")
    return None


def snapshot_tests_ordered(c: Config) -> Problem | None:
    """0 < dhmbpo.model.improvement_p <= keep_p <= 1."""
    m = c.dhmbpo.model
    if not 0.0 < m.improvement_p <= m.keep_p <= 1.0:
        return Problem("dhmbpo.model.improvement_p",
                       f"need 0 < improvement_p <= keep_p <= 1, got {m.improvement_p} and {m.keep_p}")
    return None


def whole_iterations_of_exploration(c: Config) -> Problem | None:
    """train.init_steps: a positive multiple of dhmbpo.iteration_steps."""
    init, iteration = c.train.init_steps, c.dhmbpo.iteration_steps
    if init < iteration or init % iteration:
        return Problem("train.init_steps", f"DHMBPO explores for whole iterations: a positive multiple of "
                                           f"dhmbpo.iteration_steps ({iteration}), got {init}")
    return None


def dhmbpo_task_settings(c: Config) -> Problem | None:
    """What DHMBPO needs from the task and run sections: a termination it can roll out with, the model's reward,
    no pipeline."""
    if c.env.termination == "learned":
        return Problem("env.termination", "learned is not available with DHMBPO (its rollouts need a known, never or "
                                          "module:function termination)")
    if c.env.reward != "model":
        return Problem("env.reward",
                       "DHMBPO learns the reward with its model (its actor's gradient flows through it): use model")
    if c.train.pipeline:
        return Problem("train.pipeline", "is MBPO's: DHMBPO retrains its model in its learning burst")
    return None


DHMBPO_RULES: tuple[JointRule, ...] = (target_critics_within_the_ensemble, equal_blocks_per_member,
                                       dynamics_values_per_layer, snapshot_tests_ordered,
                                       whole_iterations_of_exploration, dhmbpo_task_settings)
"""The rules that join fields, checked with algo: dhmbpo."""
