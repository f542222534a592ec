"""DDPG (Lillicrap et al. 2016): one critic, a deterministic actor, soft target copies of both.

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import torch

from mbpo_cli.agents.base import UpdateInfo, seed_sum, soft_update
from mbpo_cli.agents.deterministic import DeterministicActorCritic
from mbpo_cli.config.schema import DDPGConfig
from mbpo_cli.nn.batch import Batch


class DDPG(DeterministicActorCritic):
    """A deterministic actor and one critic with their targets and optimizers."""

    def __init__(self, obs_dim: int, act_dim: int, config: DDPGConfig, gamma: float = 0.99, seeds: int = 1) -> None:
        super().__init__(obs_dim, act_dim, hidden=config.hidden, layers=config.layers, lr=config.lr, critics=1,
                         exploration_noise=config.exploration_noise, gamma=gamma, seeds=seeds)
        self.config = config

    def blank(self, seeds: int) -> DDPG:
        """A fresh DDPG of the same dimensions and config holding `seeds` seeds."""
        return type(self)(*self.dims, self.config, self.gamma, seeds=seeds)

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int = 0) -> UpdateInfo:
        """Critic step on the one-step target, actor step up the critic's gradient, then the targets move."""
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, self.actor_target(batch.next_obs))[:, 0]
            target = batch.reward + self.gamma * (1.0 - batch.done) * next_q
        q = self.critic(batch.obs, batch.act)[:, 0]
        critic_loss = (q - target).pow(2).mean(dim=1)
        self.critic_optimizer.zero_grad(set_to_none=True)
        seed_sum(critic_loss).backward()
        self.critic_optimizer.step()
        actor_loss = self.actor_step(batch.obs)
        soft_update(self.critic_target, self.critic, self.config.tau)
        soft_update(self.actor_target, self.actor, self.config.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss, "q": q.detach().mean(dim=1)}
