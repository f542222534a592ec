"""Soft actor-critic (Haarnoja et al. 2018): twin critics as one batched network, a tanh-Gaussian actor, and a
learned temperature.

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mbpo_cli.agents.base import GraphedAgent, UpdateInfo, frozen_copy, soft_update
from mbpo_cli.agents.networks import Critics, tanh_policy
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import SACConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.mlp import BatchedMLP

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy `obs -> action in [-1, 1]`."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = BatchedMLP(1, obs_dim, 2 * act_dim, hidden, layers)
        self.act_dim = act_dim

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs.unsqueeze(0)).squeeze(0).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action `B x A` and its log-probability `B` (tanh correction included).

        The standard normal `noise` (`B x A`) is drawn from `generator` unless given.
        """
        mean, log_std = self._dist(obs)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        pre_tanh = mean + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) written stably as 2 * (log 2 - u - softplus(-2u)).
        correction = 2.0 * (math.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh))
        return action, (gaussian - correction).sum(dim=-1)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action `B x A` (tanh of the mean), used for evaluation."""
        mean, _ = self._dist(obs)
        return torch.tanh(mean)


class SAC(GraphedAgent):
    """The agent: actor, twin critics with their targets, and the temperature, with their optimizers."""

    target_entropy: torch.Tensor
    """Scalar buffer (saved in the state dict): the entropy the temperature steers towards."""

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, gamma: float = 0.99) -> None:
        super().__init__()
        self.config = config
        self.gamma = gamma
        self.actor = Actor(obs_dim, act_dim, config.hidden, config.layers)
        self.critic = Critics(obs_dim, act_dim, config.hidden, config.layers)
        self.critic_target = frozen_copy(Critics(obs_dim, act_dim, config.hidden, config.layers), self.critic)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        target = config.target_entropy if config.target_entropy is not None else -float(act_dim)
        self.register_buffer("target_entropy", torch.tensor(target))
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.lr, fused=True)

    @property
    def policy(self) -> nn.Module:
        """The actor."""
        return self.actor

    def deterministic_policy(self) -> nn.Module:
        """The actor's mean action: `tanh` of the mean of its Gaussian (the log-std outputs dropped)."""
        return tanh_policy(self.actor.net, self.actor.act_dim)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (their states belong in a checkpoint)."""
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "alpha": self.alpha_optimizer}

    def noise_shape(self, batch: Batch) -> tuple[int, ...]:
        """Policy noise `2 x B x A`: next-state actions, then current-state actions."""
        return (2, *batch.act.shape)

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int = 0) -> UpdateInfo:
        """One gradient step on critics, actor and temperature, a pure function of minibatch and noise.

        As in the official implementation (one TensorFlow session step), all three losses are computed from
        the pre-update parameters and their gradients come from one backward pass: the actor's loss sees the
        critics through detached weights, the temperature's loss sees the log-probabilities detached.
        """
        assert noise is not None
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(batch.next_obs, noise=noise[0])
            next_q = self.critic_target(batch.next_obs, next_act).min(dim=0).values
            target = batch.reward + self.gamma * (1.0 - batch.done) * (next_q - alpha * next_logp)
        q = self.critic(batch.obs, batch.act)
        critic_loss = 0.5 * (q - target).pow(2).mean(dim=1).sum()
        act, logp = self.actor.sample(batch.obs, noise=noise[1])
        frozen = [p.detach() for p in self.critic.parameters()]
        q_pi = self.critic(batch.obs, act, frozen).min(dim=0).values
        actor_loss = (alpha * logp - q_pi).mean()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            optimizer.zero_grad(set_to_none=True)
        (critic_loss + actor_loss + alpha_loss).backward()
        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            optimizer.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "alpha_loss": alpha_loss.detach(), "entropy": -logp.detach().mean()}

    def epoch_metrics(self) -> dict[str, float]:
        """The entropy temperature."""
        return {metric_keys.ALPHA: float(self.log_alpha.detach().exp())}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions `B x A` in `[-1, 1]` for observations `B x obs`: tanh of the mean, or a sample."""
        if deterministic:
            return self.actor.mean_action(obs)
        return self.actor.sample(obs, generator)[0]
