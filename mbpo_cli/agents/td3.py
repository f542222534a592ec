"""TD3 (Fujimoto et al. 2018): clipped double-Q learning, target policy smoothing, delayed actor updates.

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import torch

from mbpo_cli.agents.base import UpdateInfo, seed_sum, soft_update
from mbpo_cli.agents.deterministic import DeterministicActorCritic
from mbpo_cli.config.schema import TD3Config
from mbpo_cli.nn.batch import Batch

CRITIC_ONLY, WITH_ACTOR = 0, 1
"""Update phases: every `policy_delay`-th update also steps the actor and moves the targets."""


class TD3(DeterministicActorCritic):
    """A deterministic actor, twin critics, and target copies of both, with their optimizers."""

    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config, gamma: float = 0.99, seeds: int = 1) -> None:
        super().__init__(obs_dim, act_dim, hidden=config.hidden, layers=config.layers, lr=config.lr, critics=2,
                         exploration_noise=config.exploration_noise, gamma=gamma, seeds=seeds)
        self.config = config
        self.updates = 0
        """Updates so far, shared by every seed (decides the phase; saved in checkpoints through
        `get_extra_state`)."""

    def blank(self, seeds: int) -> TD3:
        """A fresh TD3 of the same dimensions and config holding `seeds` seeds."""
        return type(self)(*self.dims, self.config, self.gamma, seeds=seeds)

    def noise_shape(self, batch: Batch) -> tuple[int, ...]:
        """Target policy smoothing noise of one seed `B x A` (standard normal; scaled and clipped in the update)."""
        return tuple(batch.act.shape[1:])

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
            next_q = self.critic_target(batch.next_obs, next_act).min(dim=1).values
            target = batch.reward + self.gamma * (1.0 - batch.done) * next_q
        q = self.critic(batch.obs, batch.act)
        critic_loss = (q - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)
        self.critic_optimizer.zero_grad(set_to_none=True)
        seed_sum(critic_loss).backward()
        self.critic_optimizer.step()
        info = {"critic_loss": critic_loss.detach(), "q": q.detach().mean(dim=(1, 2))}
        if phase == WITH_ACTOR:
            info["actor_loss"] = self.actor_step(batch.obs)
            soft_update(self.critic_target, self.critic, cfg.tau)
            soft_update(self.actor_target, self.actor, cfg.tau)
        return info

    def get_extra_state(self) -> dict[str, int]:
        """The update counter, saved with the weights."""
        return {"updates": self.updates}

    def set_extra_state(self, state: dict[str, int]) -> None:
        """Restore the update counter."""
        self.updates = int(state["updates"])
