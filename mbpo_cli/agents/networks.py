"""Networks the agents share: critics held as one batched network, a deterministic tanh actor, and the modules a
deterministic policy is exported as (`Agent.deterministic_policy`)."""

from __future__ import annotations

import torch
from torch import nn

from mbpo_cli.nn.mlp import BatchedMLP, linear_layers


class Critics(nn.Module):
    """`members` Q networks evaluated as one batched network: `(obs, act) -> members x B` (SAC and TD3: 2)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, members: int = 2) -> None:
        super().__init__()
        self.net = BatchedMLP(members, obs_dim + act_dim, 1, hidden, layers)
        self.members = members

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, params: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Q values `members x B` for `B x obs`, `B x A`; `params` replaces the weights (e.g. detached copies)."""
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(self.members, -1, -1)
        return self.net(x, params).squeeze(-1)


class DeterministicActor(nn.Module):
    """`obs -> tanh(mlp(obs))`, an action in `[-1, 1]^A` (TD3 and DDPG)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = BatchedMLP(1, obs_dim, act_dim, hidden, layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions `B x A` for observations `B x D`."""
        return torch.tanh(self.net(obs.unsqueeze(0)).squeeze(0))


def noisy(action: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """`action + N(0, std^2)` clipped to `[-1, 1]` (exploration of a deterministic actor)."""
    noise = torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)
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
