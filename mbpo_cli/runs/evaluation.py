"""`mbpo eval`: a run's policy evaluated over seeded episodes, and the evaluation recorded in the registry.

Evaluation runs on the CPU (one observation at a time; a small MLP gains nothing from a GPU), so the
same checkpoint, seed and mode give the same returns on every machine. Episode ``i`` resets the
environment with seed ``seed + i``; ``--stochastic`` samples actions from the policy with a
``torch.Generator`` seeded ``seed``, otherwise the policy's mean action is used. The policy comes from
:mod:`mbpo_cli.runs.policy`; filming an episode is :mod:`mbpo_cli.runs.video`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from mbpo_cli.engine.envs import env_spec, make_env
from mbpo_cli.engine.episodes import evaluate
from mbpo_cli.runs.policy import EvalError, Policy
from mbpo_cli.runs.registry import Registry


@dataclass(frozen=True)
class EvalResult:
    """Per-episode returns and lengths of one evaluation (std is the population std, as in the registry)."""

    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        """Mean return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Population standard deviation of the returns."""
        return float(np.std(self.returns))

    @property
    def min(self) -> float:
        """Lowest return."""
        return float(np.min(self.returns))

    @property
    def max(self) -> float:
        """Highest return."""
        return float(np.max(self.returns))


def run_episodes(policy: Policy, episodes: int, seed: int, deterministic: bool = True) -> EvalResult:
    """``episodes`` episodes with resets seeded ``seed, seed + 1, ...``; stochastic actions use a generator
    seeded ``seed``. The same policy, seed and mode give the same returns."""
    if episodes < 1:
        raise EvalError(f"--episodes: must be at least 1, got {episodes}")
    env = make_env(policy.config.env)
    try:
        generator = None if deterministic else torch.Generator().manual_seed(seed)
        returns, lengths = evaluate(policy.agent, env, env_spec(env), episodes, seed, torch.device("cpu"),
                                    deterministic=deterministic, generator=generator)
    finally:
        env.close()
    return EvalResult(returns=returns, lengths=lengths)


class Recorded(NamedTuple):
    """Where an evaluation was recorded."""

    id: int
    """The registry row's id, shared by every run's evaluations (``mbpo runs show RUN --json``'s ``evaluations``)."""
    number: int
    """The run's own evaluation number: 1 for its first evaluation."""


def record_evaluation(registry: Registry, policy: Policy, result: EvalResult, seed: int,
                      deterministic: bool) -> Recorded:
    """Store the evaluation in the registry; returns its row id and its number among the run's evaluations."""
    run_id = policy.checkpoint.run_id
    info = registry.add_evaluation(run_id, checkpoint=str(policy.label), episodes=len(result.returns),
                                   seed=seed, deterministic=deterministic, returns=result.returns,
                                   lengths=result.lengths)
    ids = [e.id for e in registry.evaluations(run_id)]
    return Recorded(id=info.id, number=ids.index(info.id) + 1)
