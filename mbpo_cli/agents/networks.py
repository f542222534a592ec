"""Networks the agents share: critics held as one batched network, a deterministic tanh actor, and the modules a
deterministic policy is exported as (`Agent.deterministic_policy`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mbpo_cli.agents.base import seed_normal
from mbpo_cli.nn.mlp import BatchedMLP, linear_layers


class Critics(nn.Module):
    """`members` Q networks per seed of a pack of `seeds`, evaluated as one batched network of `seeds x members`
    members (seed `s` owns members `s members ... (s + 1) members - 1`): `(obs, act) -> S x members x B` (SAC and
    TD3: 2)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, members: int = 2,
                 seeds: int = 1) -> None:
        super().__init__()
        self.net = BatchedMLP(seeds * members, obs_dim + act_dim, 1, hidden, layers)
        self.members = members

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, params: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Q values `S x members x B` for `S x B x obs`, `S x B x A`; `params` replaces the weights (e.g. detached
        copies)."""
        x = torch.cat([obs, act], dim=-1)
        seeds, batch, width = x.shape
        # a view for one seed (each member reads the same rows), as before the seed axis
        x = x.unsqueeze(1).expand(seeds, self.members, batch, width).reshape(seeds * self.members, batch, width)
        return self.net(x, params).view(seeds, self.members, batch)


class DeterministicActor(nn.Module):
    """`obs -> tanh(mlp(obs))`, an action in `[-1, 1]^A` (TD3 and DDPG), one network per seed."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, seeds: int = 1) -> None:
        super().__init__()
        self.net = BatchedMLP(seeds, obs_dim, act_dim, hidden, layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions `S x B x A` for observations `S x B x D`."""
        return torch.tanh(self.net(obs))


def noisy(action: torch.Tensor, std: float, generators: Sequence[torch.Generator] | None) -> torch.Tensor:
    """`action + N(0, std^2)` clipped to `[-1, 1]` (exploration of a deterministic actor), for actions `S x B x A`:
    seed `s`'s noise from `generators[s]` (the default generator when None)."""
    noise = seed_normal(action.shape[1:], generators, action.shape[0], action)
    return (action + std * noise).clamp(-1.0, 1.0)


class Standardize(nn.Module):
    """``B x obs`` -> ``(obs - mean) / std``: an observation normalizer, copied (DHMBPO's actor acts through one)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        # frozen parameters rather than buffers: typed as tensors without class annotations, which TorchScript
        # cannot read in a module with postponed annotations
        self.mean = nn.Parameter(mean.detach().clone().float(), requires_grad=False)
        self.std = nn.Parameter(std.detach().clone().float(), requires_grad=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized observations ``B x obs``."""
        return (obs - self.mean) / self.std


class GreedyAction(nn.Module):
    """``B x obs`` -> the index of the largest Q value of ``net``, int64 ``B``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Greedy action indices ``B``."""
        return self.net(obs).argmax(dim=-1)


def tanh_policy(mlp: BatchedMLP, outputs: int | None = None, normalizer: Standardize | None = None) -> nn.Sequential:
    """``B x obs`` -> ``tanh`` of the one-member ``mlp``'s first ``outputs`` (all by default), in ``[-1, 1]``, a copy in
    ``nn.Linear`` layers, observations first through ``normalizer`` when given."""
    layers: list[nn.Module] = [] if normalizer is None else [normalizer]
    return nn.Sequential(*layers, linear_layers(mlp, outputs), nn.Tanh())
