"""DHMBPO's dynamics model: an ensemble of Gaussian MLPs with a learned constant noise scale.

E members map `[normalized obs, action]` to the mean of `[reward, next_obs - obs]` in normalized units; the noise
scale is one learned parameter per member and output (no variance head). Normalizers are running statistics of all
real data, refreshed at each retrain and frozen between. Rollouts run in normalized-observation space: `step` takes
and returns normalized observations, splits its batch into E equal blocks each served by one member, adds the
member's noise to the observation change (the reward is the mean prediction), and lets gradients flow to its
inputs, never to its weights. Training is in `mbpo_cli.models.dynamics_fit`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.config.schema import DynamicsConfig
from mbpo_cli.nn.normed_mlp import Masks, NormedEnsembleMLP

MIN_VARIANCE = 1e-8
"""Floor of a normalizer's variance (its std is at least 1e-4)."""
SCORE_ROWS = 512
"""Validation rows scored at once: every member's activations of a chunk stay in a CPU's cache (half the time of
scoring 12,288 rows at once at Hopper's shapes; the same numbers)."""


class DynamicsEnsemble(nn.Module):
    """E Gaussian networks `[obs, act] -> [reward, obs change]`, their noise scales and their normalizers."""

    # Buffers (saved in the state dict), declared so that they type as tensors.
    obs_mean: torch.Tensor
    """`obs`: mean of the real observations."""
    obs_std: torch.Tensor
    """`obs`: their std."""
    out_mean: torch.Tensor
    """`1 + obs`: mean of the real `[reward, next_obs - obs]`."""
    out_std: torch.Tensor
    """`1 + obs`: their std."""

    def __init__(self, obs_dim: int, act_dim: int, config: DynamicsConfig) -> None:
        super().__init__()
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.out_dim = obs_dim + 1
        self.members = config.members
        self.net = NormedEnsembleMLP(config.members, obs_dim + act_dim, self.out_dim, config.hidden, config.layers,
                                     config.norm_eps, config.dropout)
        self.log_noise = nn.Parameter(torch.zeros(config.members, 1, self.out_dim))
        """`E x 1 x out`: each member's log noise scale in normalized units."""
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("out_mean", torch.zeros(self.out_dim))
        self.register_buffer("out_std", torch.ones(self.out_dim))

    # -- normalization ----------------------------------------------------------------------------

    @torch.no_grad()
    def set_normalizers(self, obs: torch.Tensor, targets: torch.Tensor) -> None:
        """Mean and std (population, variance floored at `MIN_VARIANCE`) of real observations `N x obs` and raw
        targets `N x out` (`raw_targets`), computed in float64."""
        for data, mean, std in ((obs, self.obs_mean, self.obs_std), (targets, self.out_mean, self.out_std)):
            wide = data.double()
            mean.copy_(wide.mean(dim=0))
            std.copy_(wide.var(dim=0, unbiased=False).clamp_min(MIN_VARIANCE).sqrt())

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations `... x obs` -> normalized."""
        return (obs - self.obs_mean) / self.obs_std

    def denormalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized observations `... x obs` -> raw."""
        return obs * self.obs_std + self.obs_mean

    def inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Network inputs `N x (obs + act)` of raw observations and actions."""
        return torch.cat([self.normalize_obs(obs), act], dim=-1)

    def targets(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw targets `N x out` (`raw_targets`) -> normalized."""
        return (raw - self.out_mean) / self.out_std

    # -- rollouts -----------------------------------------------------------------------------------

    def step(self, obs: torch.Tensor, act: torch.Tensor, noise: torch.Tensor, order: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        """One model step of `B` normalized observations and actions: reward `B` and next normalized obs `B x obs`.

        The batch is split into E equal blocks of consecutive rows; `order` (a permutation of the E members) gives
        the member serving each block. Each block's observation change is its member's mean plus its noise scale
        times the standard normal `noise` (`B x obs`); the reward is the mean. No dropout (evaluation mode).
        Gradients reach `obs` and `act`, never the model's parameters.
        """
        b, e = obs.shape[0], self.members
        x = torch.cat([obs, act], dim=-1).view(e, b // e, -1)
        served = self.net(x[order.argsort()], params=self.net.detached())  # member m on block argsort(order)[m]
        mean = served[order]  # block j's prediction, by member order[j]
        scale = self.log_noise.detach()[order].exp()
        noisy = mean + scale * F.pad(noise.view(e, b // e, -1), (1, 0))
        out = torch.addcmul(self.out_mean, noisy.view(b, -1), self.out_std)
        return out[:, 0], torch.addcdiv(obs, out[:, 1:], self.obs_std)

    # -- training -------------------------------------------------------------------------------------

    def nll(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, masks: Masks | None) -> torch.Tensor:
        """The training loss: per member, the Gaussian negative log-likelihood of normalized targets `E x N x out`
        given inputs `N x in` (every member sees the same inputs), summed over outputs and weighted per sample by
        `weights` (`E x N`, the bootstrap); summed over members, averaged over samples. The noise scale's log term
        is floored at `log(min_std)` (its gradient vanishes below)."""
        mean = self.net(x.expand(self.members, -1, -1), masks)
        half_precision = torch.exp(-2.0 * self.log_noise) * 0.5
        log_term = self.log_noise.clamp_min(math.log(self.config.min_std))
        per_sample = ((mean - y).square() * half_precision + log_term).sum(dim=-1)
        return (per_sample * weights).sum() / x.shape[0]

    @torch.no_grad()
    def scores(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample validation NLL `N` of the moment-matched ensemble on inputs `N x in`, normalized targets
        `N x out`: a Gaussian with the members' mean, and the variance of their means (unbiased) plus the exponent
        of twice their mean log noise scale; summed over outputs. Computed `SCORE_ROWS` rows at a time."""
        noise = torch.exp(2.0 * self.log_noise.mean(dim=0))
        parts = []
        for start in range(0, x.shape[0], SCORE_ROWS):
            means = self.net(x[start : start + SCORE_ROWS].expand(self.members, -1, -1))
            variance = noise + means.var(dim=0)
            error = (y[start : start + SCORE_ROWS] - means.mean(dim=0)).square()
            parts.append((0.5 * error / variance + 0.5 * variance.log()).sum(dim=-1))
        return torch.cat(parts)


def raw_targets(obs: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """What the model predicts, in raw units `N x (1 + obs)`: reward, then the observation change."""
    return torch.cat([reward.unsqueeze(-1), next_obs - obs], dim=-1)


def make_dynamics_optimizer(model: DynamicsEnsemble) -> torch.optim.AdamW:
    """AdamW with each layer's weights and bias in a group of its decoupled weight decay, and the log noise scale
    in a group of `noise_decay` (a fresh one at every retrain)."""
    cfg = model.config
    net = model.net
    groups: list[dict] = [{"params": [w, b], "weight_decay": decay}
                          for w, b, decay in zip(net.weights, net.biases, cfg.weight_decay, strict=True)]
    groups.append({"params": [model.log_noise], "weight_decay": cfg.noise_decay})
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
