"""DDPG (Lillicrap et al. 2016): one critic, a deterministic actor, soft target copies of both.

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import torch
from torch import nn

from mbpo_cli.agents.base import GraphedAgent, UpdateInfo, frozen_copy, soft_update
from mbpo_cli.agents.networks import Critics, DeterministicActor, noisy
from mbpo_cli.config.schema import DDPGConfig
from mbpo_cli.nn.batch import Batch


class DDPG(GraphedAgent):
    """A deterministic actor and one critic with their targets and optimizers."""

    def __init__(self, obs_dim: int, act_dim: int, config: DDPGConfig, gamma: float = 0.99) -> None:
        super().__init__()
        self.config = config
        self.gamma = gamma
        self.actor = DeterministicActor(obs_dim, act_dim, config.hidden, config.layers)
        self.actor_target = frozen_copy(DeterministicActor(obs_dim, act_dim, config.hidden, config.layers),
                                        self.actor)
        self.critic = Critics(obs_dim, act_dim, config.hidden, config.layers, members=1)
        self.critic_target = frozen_copy(Critics(obs_dim, act_dim, config.hidden, config.layers, members=1),
                                         self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr, fused=True)

    @property
    def policy(self) -> nn.Module:
        """The actor."""
        return self.actor

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name."""
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int = 0) -> UpdateInfo:
        """Critic step on the one-step target, actor step up the critic's gradient, then the targets move."""
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, self.actor_target(batch.next_obs))[0]
            target = batch.reward + self.gamma * (1.0 - batch.done) * next_q
        q = self.critic(batch.obs, batch.act)[0]
        critic_loss = (q - target).pow(2).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        frozen = [p.detach() for p in self.critic.parameters()]
        actor_loss = -self.critic(batch.obs, self.actor(batch.obs), frozen)[0].mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        soft_update(self.critic_target, self.critic, self.config.tau)
        soft_update(self.actor_target, self.actor, self.config.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "q": q.detach().mean()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions `B x A`: the actor's, plus Gaussian exploration noise unless deterministic."""
        action = self.actor(obs)
        return action if deterministic else noisy(action, self.config.exploration_noise, generator)
