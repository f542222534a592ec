"""TD3 (Fujimoto et al. 2018): clipped double-Q learning, target policy smoothing, delayed actor updates.

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import torch
from torch import nn

from mbpo_cli.agents.base import GraphedAgent, UpdateInfo, frozen_copy, soft_update
from mbpo_cli.agents.networks import Critics, DeterministicActor, noisy
from mbpo_cli.config.schema import TD3Config
from mbpo_cli.nn.batch import Batch

CRITIC_ONLY, WITH_ACTOR = 0, 1
"""Update phases: every `policy_delay`-th update also steps the actor and moves the targets."""


class TD3(GraphedAgent):
    """A deterministic actor, twin critics, and target copies of both, with their optimizers."""

    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config, gamma: float = 0.99) -> None:
        super().__init__()
        self.config = config
        self.gamma = gamma
        self.actor = DeterministicActor(obs_dim, act_dim, config.hidden, config.layers)
        self.actor_target = frozen_copy(DeterministicActor(obs_dim, act_dim, config.hidden, config.layers),
                                        self.actor)
        self.critic = Critics(obs_dim, act_dim, config.hidden, config.layers)
        self.critic_target = frozen_copy(Critics(obs_dim, act_dim, config.hidden, config.layers), self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr, fused=True)
        self.updates = 0
        """Updates so far (decides the phase; saved in checkpoints through `get_extra_state`)."""

    @property
    def policy(self) -> nn.Module:
        """The actor."""
        return self.actor

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name."""
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def noise_shape(self, batch: Batch) -> tuple[int, ...]:
        """Target policy smoothing noise `B x A` (standard normal; scaled and clipped in the update)."""
        return tuple(batch.act.shape)

    def phases(self) -> tuple[int, ...]:
        """Critic only, or critic and actor."""
        return (CRITIC_ONLY, WITH_ACTOR)

    def next_phase(self) -> int:
        """WITH_ACTOR on every `policy_delay`-th update."""
        self.updates += 1
        return WITH_ACTOR if self.updates % self.config.policy_delay == 0 else CRITIC_ONLY

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int) -> UpdateInfo:
        """Critic step on the smoothed clipped double-Q target; on WITH_ACTOR also actor step and target moves."""
        assert noise is not None
        cfg = self.config
        with torch.no_grad():
            smoothing = (cfg.policy_noise * noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_act = (self.actor_target(batch.next_obs) + smoothing).clamp(-1.0, 1.0)
            next_q = self.critic_target(batch.next_obs, next_act).min(dim=0).values
            target = batch.reward + self.gamma * (1.0 - batch.done) * next_q
        q = self.critic(batch.obs, batch.act)
        critic_loss = (q - target).pow(2).mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        info = {"critic_loss": critic_loss.detach(), "q": q.detach().mean()}
        if phase == WITH_ACTOR:
            frozen = [p.detach() for p in self.critic.parameters()]
            actor_loss = -self.critic(batch.obs, self.actor(batch.obs), frozen)[0].mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.critic_target, self.critic, cfg.tau)
            soft_update(self.actor_target, self.actor, cfg.tau)
            info["actor_loss"] = actor_loss.detach()
        return info

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions `B x A`: the actor's, plus Gaussian exploration noise unless deterministic."""
        action = self.actor(obs)
        return action if deterministic else noisy(action, self.config.exploration_noise, generator)

    def get_extra_state(self) -> dict[str, int]:
        """The update counter, saved with the weights."""
        return {"updates": self.updates}

    def set_extra_state(self, state: dict[str, int]) -> None:
        """Restore the update counter."""
        self.updates = int(state["updates"])
