"""Double DQN (van Hasselt et al. 2016) for Discrete actions, with a soft-updated target network.

Actions are one-hot vectors `B x A` over the `A` choices (what the buffers and the dynamics model take).
The policy is epsilon-greedy, epsilon falling linearly over the first `epsilon_decay_steps` real env steps;
model rollouts act with the current epsilon too. A pack of S seeds holds S Q networks; epsilon follows the
pack's shared step count, each seed's random actions come from its own generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.agents.base import Generators, GraphedAgent, UpdateInfo, frozen_copy, seed_sum, soft_update
from mbpo_cli.agents.networks import GreedyAction
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import DQNConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.mlp import BatchedMLP, linear_layers
from mbpo_cli.nn.optim import SeedAdam


class QNetwork(nn.Module):
    """`obs -> Q values` over the `A` actions (`S x B x D -> S x B x A`), one network per seed."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, layers: int, seeds: int = 1) -> None:
        super().__init__()
        self.net = BatchedMLP(seeds, obs_dim, n_actions, hidden, layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q values `S x B x A`."""
        return self.net(obs)


def clip_grad_norm_per_seed(parameters: Sequence[nn.Parameter], max_norm: float, seeds: int) -> None:
    """`nn.utils.clip_grad_norm_` of each seed's gradients on their own: seed `s`'s rows of every gradient scaled by
    `min(1, max_norm / (its 2-norm over all its rows + 1e-6))`."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(seeds, -1), dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, dim=0)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.view(seeds, *([1] * (g.dim() - 1))))


class DQN(GraphedAgent):
    """The Q network, its target copy and its optimizer."""

    action_space = "discrete"

    def __init__(self, obs_dim: int, n_actions: int, config: DQNConfig, gamma: float = 0.99, seeds: int = 1) -> None:
        super().__init__(seeds)
        self.config = config
        self.gamma = gamma
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.q = QNetwork(obs_dim, n_actions, config.hidden, config.layers, seeds)
        self.q_target = frozen_copy(QNetwork(obs_dim, n_actions, config.hidden, config.layers, seeds), self.q)
        self.optimizer = SeedAdam(self.q.parameters(), seeds=self.seeds, lr=config.lr)
        self.epsilon = config.epsilon_start
        """The exploration rate, shared by every seed (it follows the pack's step count)."""

    def blank(self, seeds: int) -> DQN:
        """A fresh DQN of the same dimensions and config holding `seeds` seeds."""
        return type(self)(self.obs_dim, self.n_actions, self.config, self.gamma, seeds=seeds)

    def shared_values(self) -> dict[str, Any]:
        """The exploration rate."""
        return {"epsilon": self.epsilon}

    def load_shared_values(self, values: Mapping[str, Any]) -> None:
        """Restore the exploration rate."""
        self.epsilon = float(values["epsilon"])

    @property
    def policy(self) -> nn.Module:
        """The Q network (the greedy policy is its argmax) of a lone agent."""
        self.lone("the policy")
        return self.q

    def deterministic_policy(self) -> nn.Module:
        """The greedy action's index (`GreedyAction` of the Q network)."""
        self.lone("a deterministic policy")
        return GreedyAction(linear_layers(self.q.net))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizer by name."""
        return {"q": self.optimizer}

    def on_env_step(self, env_step: int) -> None:
        """Epsilon at `env_step`: linear from `epsilon_start` to `epsilon_end` over `epsilon_decay_steps`."""
        cfg = self.config
        fraction = min(1.0, env_step / cfg.epsilon_decay_steps)
        self.epsilon = cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)

    def epoch_metrics(self) -> list[dict[str, float]]:
        """The exploration rate (the same for every seed)."""
        return [{metric_keys.EPSILON: self.epsilon} for _ in range(self.seeds)]

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int = 0) -> UpdateInfo:
        """One Huber-loss step of each seed towards its double-DQN target, its gradient clipped on its own; then the
        target networks move by `tau`."""
        with torch.no_grad():
            best_next = self.q(batch.next_obs).argmax(dim=-1, keepdim=True)
            next_q = self.q_target(batch.next_obs).gather(-1, best_next).squeeze(-1)
            target = batch.reward + self.gamma * (1.0 - batch.done) * next_q
        q = (self.q(batch.obs) * batch.act).sum(dim=-1)
        loss = F.smooth_l1_loss(q, target, reduction="none").mean(dim=1)
        self.optimizer.zero_grad(set_to_none=True)
        seed_sum(loss).backward()
        clip_grad_norm_per_seed(list(self.q.parameters()), self.config.max_grad_norm, self.seeds)
        self.optimizer.step()
        soft_update(self.q_target, self.q, self.config.tau)
        return {"q_loss": loss.detach(), "q": q.detach().mean(dim=1)}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generators: Generators | None = None) -> torch.Tensor:
        """One-hot actions `S x B x A`: greedy, or epsilon-greedy (uniform over all actions with probability
        epsilon, seed `s`'s draws from `generators[s]`, the default generator when None)."""
        choice = self.q(obs).argmax(dim=-1)
        if not deterministic:
            seeds, n = obs.shape[:2]
            streams: Sequence[torch.Generator | None] = [None] * seeds if generators is None else generators
            draws = [self._explore(n, g, obs.device) for g in streams]
            explore = torch.stack([e for e, _ in draws])
            uniform = torch.stack([u for _, u in draws])
            choice = torch.where(explore, uniform, choice)
        return F.one_hot(choice, self.n_actions).to(obs.dtype)

    def _explore(self, n: int, generator: torch.Generator | None,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """One seed's draws for `n` actions, as a lone run draws them: whether to explore, and a uniform action."""
        explore = torch.rand(n, generator=generator, device=device) < self.epsilon
        return explore, torch.randint(self.n_actions, (n,), generator=generator, device=device)
