"""Termination in model rollouts, in one home: which next states end a model branch.

A run's `env.termination` setting picks one of four kinds (`TerminationKind`), each implemented in a module here:

  known     `known.py`: the paper's tasks' functions, vectorized in torch (Hopper's height and angle, ...)
  never     `known.py`: nothing terminates (HalfCheetah, and any task without a known function)
  learned   `learned.py`: a classifier of next observations trained on the real transitions with the model
  custom    `custom.py`: the user's `module:function`, checked at every call (beside it the custom reward, the
            same kind of user code)

`termination_of(config)` resolves the setting into a `Termination`; the engine turns it into the run's termination
function (the learned kind's classifier is built and trained by the engine, with the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.models.termination.custom import CustomTermination, import_function
from mbpo_cli.models.termination.known import TERMINATION_FNS, TerminationFn, termination_name


class TerminationKind(str, Enum):
    """Where a run's termination comes from."""

    KNOWN = "known"
    NEVER = "never"
    LEARNED = "learned"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Termination:
    """How rollouts decide termination: its kind, its function (for all but learned, whose classifier the engine
    builds) and how to say it."""

    kind: TerminationKind
    fn: TerminationFn | None
    description: str


def termination_of(config: Config) -> Termination:
    """The termination rollouts use for `config.env.termination` (ConfigError when it names nothing usable)."""
    setting, env_id = config.env.termination, config.env.id
    if setting == "learned":
        return Termination(TerminationKind.LEARNED, None, "learned (a classifier trained with the model)")
    if ":" in setting:
        fn = CustomTermination(import_function(setting, "env.termination"), setting)
        return Termination(TerminationKind.CUSTOM, fn, f"custom ({setting})")
    name = termination_name(setting, env_id)
    if name is None:
        raise ConfigError(f"env.termination: {setting}: {env_id} has no known termination function; "
                          "use learned, never or module:function")
    if name == "never":
        return Termination(TerminationKind.NEVER, TERMINATION_FNS[name], name)
    return Termination(TerminationKind.KNOWN, TERMINATION_FNS[name], f"known ({name})")
