"""DHMBPO's model side in a run: the dynamics model with the labels of its real data, the binding of the model to
the agent's training rollouts, and the distribution rollouts (DR) that fill a burst's buffer of start states.

A DR branches from real states (normalized) with the current stochastic policy and the same model sampling as a
training rollout, without gradients, for `distribution_horizon` steps, and keeps the states only: every state of
every branch up to (not including) its first terminal state, the real start included. Rounds repeat until the DR
has added at least the asked number of states (normally one round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.agents.value_expansion import Dynamics, RolloutNoise, training_rollout
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.models.dynamics import DynamicsEnsemble
from mbpo_cli.models.dynamics_fit import TransitionLabels
from mbpo_cli.models.termination.known import TerminationFn


@dataclass
class DoubleHorizon:
    """A DHMBPO run's dynamics model and the validation labels and bootstrap weights of the real data."""

    model: DynamicsEnsemble
    labels: TransitionLabels

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint holds of it: the model's weights and the labels."""
        return {"model": self.model.state_dict(), "labels": self.labels.state_dict()}

    def load_checkpoint_state(self, saved: dict[str, Any]) -> None:
        """Load what `checkpoint_state` saved."""
        self.model.load_state_dict(saved["model"])
        self.labels.load_state_dict(saved["labels"])


def bind_model(agent: DHMBPOAgent, model: DynamicsEnsemble, termination: TerminationFn) -> Dynamics:
    """Bind `model` (and the task's termination, on de-normalized observations) to the agent's training rollouts;
    the binding, which the distribution rollouts use too."""
    dynamics = Dynamics(step=model.step, terminated=lambda obs: termination(model.denormalize_obs(obs)),
                        members=model.members)
    agent.bind(dynamics)
    return dynamics


class StateBuffer:
    """The DR buffer: normalized states `C x S`, first in first out, sampled uniformly with replacement."""

    def __init__(self, capacity: int, obs_dim: int, device: torch.device) -> None:
        self.states = torch.zeros(capacity, obs_dim, device=device)
        self.capacity = capacity
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, states: torch.Tensor) -> None:
        """Append `N x S` states, overwriting the oldest once full."""
        n = states.shape[0]
        if n >= self.capacity:
            states, n = states[n - self.capacity :], self.capacity
        first = min(n, self.capacity - self.ptr)
        self.states[self.ptr : self.ptr + first] = states[:first]
        self.states[: n - first] = states[first:]
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n x S` states drawn uniformly with replacement."""
        return self.states[torch.randint(self.size, (n,), generator=generator, device=self.states.device)]


@torch.no_grad()
def distribution_rollout(agent: DHMBPOAgent, dynamics: Dynamics, real: ReplayBuffer, model: DynamicsEnsemble,
                         buffer: StateBuffer, states: int, generator: torch.Generator) -> int:
    """Add at least `states` DR states to `buffer` (see the module); how many were added. One host
    synchronization per round (the number of live states)."""
    cfg = agent.config
    added = 0
    while added < states:
        starts = model.normalize_obs(real.sample(cfg.distribution_starts, generator).obs)
        size = RolloutNoise.size(cfg.distribution_horizon, starts.shape[0], agent.act_dim, agent.obs_dim,
                                 dynamics.members)
        noise = RolloutNoise.read(torch.randn(size, generator=generator, device=starts.device),
                                  cfg.distribution_horizon, starts.shape[0], agent.act_dim, agent.obs_dim,
                                  dynamics.members)
        rollout = training_rollout(agent.actor.sample, dynamics, starts, noise)
        live = rollout.states[rollout.masks > 0]
        buffer.add(live)
        added += live.shape[0]
    return added
