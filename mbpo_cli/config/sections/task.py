"""The task section: which environment (and the wrappers around it), how model rollouts end and where their rewards
come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mbpo_cli.config.env_wrappers import WRAPPER_NAME
from mbpo_cli.config.rules import NameOrFunction, checked

KNOWN_TERMINATIONS = ("hopper", "walker2d", "halfcheetah", "ant", "humanoid", "inverted_pendulum",
                      "inverted_double_pendulum")
"""Tasks whose termination function is known (`mbpo_cli.models.termination.known` implements each)."""


TERMINATION_MODES = ("known", "learned", "never", "auto")
"""`env.termination` values besides a task name and `module:function`."""

TERMINATION = NameOrFunction((*TERMINATION_MODES, *KNOWN_TERMINATIONS), "known, learned, never, auto, module:function "
                             f"or a task name ({', '.join(KNOWN_TERMINATIONS)})")
"""The values of `env.termination`."""
REWARD = NameOrFunction(("model",), "model or module:function")
"""The values of `env.reward`."""


@dataclass(frozen=True)
class WrapperConfig:
    """One gymnasium wrapper around the task (an item of `env.wrappers`)."""

    name: str = field(default="", metadata=checked(WRAPPER_NAME))
    """A wrapper of `gymnasium.wrappers` by its class name (`RescaleAction`, `TimeLimit`, `FilterObservation`, ...) or
    `module:Class` for another one (the working directory importable, as for custom functions). It must keep no
    state between steps that changes what the task returns: checkpoints restore the task, not a wrapper's own
    state (gymnasium's stateful wrappers, such as NormalizeObservation, are refused)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the wrapper's constructor (after the environment), e.g. `{max_episode_steps: 500}`; a list
    is passed as a tuple (`{shape: [2, 2]}`)."""


@dataclass(frozen=True)
class EnvConfig:
    """The task."""

    id: str = "InvertedPendulum-v5"
    """Gymnasium environment id, `module:EnvId` (the module registers it) or a namespaced id such as
    `dm_control/cartpole-swingup-v0` (the namespace's package is imported). Box actions for sac/td3/ddpg, Discrete
    for dqn; the observation a flat Box, or a Dict or Tuple, which is flattened (gymnasium's `FlattenObservation`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make`, e.g. v5 observation options or `max_episode_steps`."""
    wrappers: tuple[WrapperConfig, ...] = ()
    """Gymnasium wrappers applied in order around the task (training, evaluation, export, diagnostics and resume
    alike): a list of `{name: ..., kwargs: {...}}`. A Dict or Tuple observation left by them is then flattened."""
    termination: str = field(default="known", metadata=checked(TERMINATION))
    """How model rollouts decide that an episode ends: known (the paper's function for this task; an error for
    a task without one), learned (a classifier trained with the model on real transitions, see `done_model`),
    never, a task name (hopper, ...), `module:function` (vectorized: next observations `N x D` -> bool `N`), or
    auto (known when the task has a known function, else never: what runs recorded before `known` existed use)."""
    reward: str = field(default="model", metadata=checked(REWARD))
    """Where model rollouts take their rewards: model (predicted by the ensemble, as in the paper) or
    `module:function` of `(obs N x D, act N x A, next_obs N x D)` -> `N`."""
