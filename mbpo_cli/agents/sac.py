"""Soft actor-critic (Haarnoja et al. 2018): twin critics as one batched network, a tanh-Gaussian actor, and a
learned temperature, for a pack of S seeds (actor `S` members, critics `2S`, temperature `S`).

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mbpo_cli.agents.base import (
    Generators,
    GraphedAgent,
    UpdateInfo,
    frozen_copy,
    scalar_to_seed_axis,
    seed_normal,
    seed_sum,
    soft_update,
)
from mbpo_cli.agents.networks import Critics, tanh_policy
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import SACConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.mlp import BatchedMLP
from mbpo_cli.nn.optim import SeedAdam

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy `obs -> action in [-1, 1]`, one network per seed."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, seeds: int = 1) -> None:
        super().__init__()
        self.net = BatchedMLP(seeds, obs_dim, 2 * act_dim, hidden, layers)
        self.act_dim = act_dim

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, obs: torch.Tensor, generators: Generators | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action `S x B x A` for `S x B x D` and its log-probability `S x B` (tanh correction
        included).

        The standard normal `noise` (`S x B x A`) is drawn unless given, seed `s`'s from `generators[s]`.
        """
        mean, log_std = self._dist(obs)
        if noise is None:
            noise = seed_normal(mean.shape[1:], generators, mean.shape[0], mean)
        pre_tanh = mean + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) written stably as 2 * (log 2 - u - softplus(-2u)).
        correction = 2.0 * (math.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh))
        return action, (gaussian - correction).sum(dim=-1)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action `S x B x A` (tanh of the mean), used for evaluation."""
        mean, _ = self._dist(obs)
        return torch.tanh(mean)


class SAC(GraphedAgent):
    """The agent: actor, twin critics with their targets, and the temperature, with their optimizers."""

    target_entropy: torch.Tensor
    """Scalar buffer (saved in the state dict, shared by every seed): the entropy the temperature steers towards."""
    shared_state = frozenset({"target_entropy"})

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, gamma: float = 0.99, seeds: int = 1) -> None:
        super().__init__(seeds)
        self.dims = (obs_dim, act_dim)
        self.config = config
        self.gamma = gamma
        self.actor = Actor(obs_dim, act_dim, config.hidden, config.layers, seeds)
        self.critic = Critics(obs_dim, act_dim, config.hidden, config.layers, seeds=seeds)
        self.critic_target = frozen_copy(Critics(obs_dim, act_dim, config.hidden, config.layers, seeds=seeds),
                                         self.critic)
        self.log_alpha = nn.Parameter(torch.full((seeds,), math.log(config.init_alpha), device="cpu"))
        """The log-temperature of each seed, `S`."""
        target = config.target_entropy if config.target_entropy is not None else -float(act_dim)
        self.register_buffer("target_entropy", torch.tensor(target, device="cpu"))
        self.actor_optimizer = SeedAdam(self.actor.parameters(), seeds=self.seeds, lr=config.lr)
        self.critic_optimizer = SeedAdam(self.critic.parameters(), seeds=self.seeds, lr=config.lr)
        self.alpha_optimizer = SeedAdam([self.log_alpha], seeds=self.seeds, lr=config.lr)

    def blank(self, seeds: int) -> SAC:
        """A fresh SAC of the same dimensions and config holding `seeds` seeds."""
        return type(self)(*self.dims, self.config, self.gamma, seeds=seeds)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        scalar_to_seed_axis(state_dict, [prefix + "log_alpha"])  # checkpoints before the seed axis: a scalar
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def policy(self) -> nn.Module:
        """The actor (of a lone agent)."""
        self.lone("the policy")
        return self.actor

    def deterministic_policy(self) -> nn.Module:
        """The actor's mean action: `tanh` of the mean of its Gaussian (the log-std outputs dropped)."""
        self.lone("a deterministic policy")
        return tanh_policy(self.actor.net, self.actor.act_dim)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (their states belong in a checkpoint)."""
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "alpha": self.alpha_optimizer}

    def noise_shape(self, batch: Batch) -> tuple[int, ...]:
        """Policy noise of one seed `2 x B x A`: next-state actions, then current-state actions."""
        return (2, *batch.act.shape[1:])

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int = 0) -> UpdateInfo:
        """One gradient step on critics, actor and temperature of every seed, a pure function of minibatch and noise
        (`S x 2 x B x A`).

        As in the official implementation (one TensorFlow session step), all three losses are computed from
        the pre-update parameters and their gradients come from one backward pass: the actor's loss sees the
        critics through detached weights, the temperature's loss sees the log-probabilities detached.
        """
        assert noise is not None
        alpha = self.log_alpha.exp().detach().unsqueeze(1)
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(batch.next_obs, noise=noise[:, 0])
            next_q = self.critic_target(batch.next_obs, next_act).min(dim=1).values
            target = batch.reward + self.gamma * (1.0 - batch.done) * (next_q - alpha * next_logp)
        q = self.critic(batch.obs, batch.act)
        critic_loss = 0.5 * (q - target.unsqueeze(1)).pow(2).mean(dim=2).sum(dim=1)
        act, logp = self.actor.sample(batch.obs, noise=noise[:, 1])
        frozen = [p.detach() for p in self.critic.parameters()]
        q_pi = self.critic(batch.obs, act, frozen).min(dim=1).values
        actor_loss = (alpha * logp - q_pi).mean(dim=1)
        alpha_loss = -(self.log_alpha.unsqueeze(1) * (logp.detach() + self.target_entropy)).mean(dim=1)
        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            optimizer.zero_grad(set_to_none=True)
        seed_sum(critic_loss + actor_loss + alpha_loss).backward()
        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            optimizer.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "alpha_loss": alpha_loss.detach(), "entropy": -logp.detach().mean(dim=1)}

    def epoch_metrics(self) -> list[dict[str, float]]:
        """The entropy temperature of each seed."""
        return [{metric_keys.ALPHA: alpha} for alpha in self.log_alpha.detach().exp().tolist()]

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generators: Generators | None = None) -> torch.Tensor:
        """Actions `S x B x A` in `[-1, 1]` for observations `S x B x obs`: tanh of the mean, or a sample."""
        if deterministic:
            return self.actor.mean_action(obs)
        return self.actor.sample(obs, generators)[0]
