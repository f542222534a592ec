"""What TD3 and DDPG share: a deterministic tanh actor and Q networks, each with a target copy and an Adam
optimizer, acting with clipped Gaussian exploration noise; for a pack of S seeds (actor `S` members, critics
`S x critics`)."""

from __future__ import annotations

import torch
from torch import nn

from mbpo_cli.agents.base import Generators, GraphedAgent, frozen_copy, seed_sum
from mbpo_cli.agents.networks import Critics, DeterministicActor, noisy, tanh_policy
from mbpo_cli.nn.optim import SeedAdam


class DeterministicActorCritic(GraphedAgent):
    """The networks, targets and optimizers of a deterministic-policy actor-critic with `critics` Q networks."""

    def __init__(self, obs_dim: int, act_dim: int, *, hidden: int, layers: int, lr: float, critics: int,
                 exploration_noise: float, gamma: float, seeds: int = 1) -> None:
        super().__init__(seeds)
        self.dims = (obs_dim, act_dim)
        self.gamma = gamma
        self.exploration_noise = exploration_noise
        self.actor = DeterministicActor(obs_dim, act_dim, hidden, layers, seeds)
        self.actor_target = frozen_copy(DeterministicActor(obs_dim, act_dim, hidden, layers, seeds), self.actor)
        self.critic = Critics(obs_dim, act_dim, hidden, layers, members=critics, seeds=seeds)
        self.critic_target = frozen_copy(Critics(obs_dim, act_dim, hidden, layers, members=critics, seeds=seeds),
                                         self.critic)
        self.actor_optimizer = SeedAdam(self.actor.parameters(), seeds=self.seeds, lr=lr)
        self.critic_optimizer = SeedAdam(self.critic.parameters(), seeds=self.seeds, lr=lr)

    @property
    def policy(self) -> nn.Module:
        """The actor (of a lone agent)."""
        self.lone("the policy")
        return self.actor

    def deterministic_policy(self) -> nn.Module:
        """The actor: `tanh` of its network."""
        self.lone("a deterministic policy")
        return tanh_policy(self.actor.net)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name."""
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generators: Generators | None = None) -> torch.Tensor:
        """Actions `S x B x A`: the actor's, plus Gaussian exploration noise unless deterministic."""
        action = self.actor(obs)
        return action if deterministic else noisy(action, self.exploration_noise, generators)

    def actor_step(self, obs: torch.Tensor) -> torch.Tensor:
        """One step of each seed's actor up its first critic's value (critic weights held fixed); the losses `S`,
        detached."""
        frozen = [p.detach() for p in self.critic.parameters()]
        loss = -self.critic(obs, self.actor(obs), frozen)[:, 0].mean(dim=1)
        self.actor_optimizer.zero_grad(set_to_none=True)
        seed_sum(loss).backward()
        self.actor_optimizer.step()
        return loss.detach()
