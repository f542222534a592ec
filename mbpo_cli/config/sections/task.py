"""The task section: which environment, how model rollouts end and where their rewards come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
class EnvConfig:
    """The task."""

    id: str = "InvertedPendulum-v5"
    """Gymnasium environment id (a flat Box observation; Box actions for sac/td3/ddpg, Discrete for dqn)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make`, e.g. v5 observation options."""
    termination: str = field(default="known", metadata=checked(TERMINATION))
    """How model rollouts decide that an episode ends: known (the paper's function for this task; an error for
    a task without one), learned (a classifier trained with the model on real transitions, see `done_model`),
    never, a task name (hopper, ...), `module:function` (vectorized: next observations `N x D` -> bool `N`), or
    auto (known when the task has a known function, else never: what runs recorded before `known` existed use)."""
    reward: str = field(default="model", metadata=checked(REWARD))
    """Where model rollouts take their rewards: model (predicted by the ensemble, as in the paper) or
    `module:function` of `(obs N x D, act N x A, next_obs N x D)` -> `N`."""
