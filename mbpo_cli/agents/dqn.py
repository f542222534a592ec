"""Double DQN (van Hasselt et al. 2016) for Discrete actions, with a soft-updated target network.

Actions are one-hot vectors `B x A` over the `A` choices (what the buffers and the dynamics model take).
The policy is epsilon-greedy, epsilon falling linearly over the first `epsilon_decay_steps` real env steps;
model rollouts act with the current epsilon too.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.agents.base import GraphedAgent, UpdateInfo, frozen_copy, soft_update
from mbpo_cli.agents.networks import GreedyAction
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import DQNConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.mlp import BatchedMLP, linear_layers


class QNetwork(nn.Module):
    """`obs -> Q values` over the `A` actions (`B x D -> B x A`)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = BatchedMLP(1, obs_dim, n_actions, hidden, layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q values `B x A`."""
        return self.net(obs.unsqueeze(0)).squeeze(0)


class DQN(GraphedAgent):
    """The Q network, its target copy and its optimizer."""

    action_space = "discrete"

    def __init__(self, obs_dim: int, n_actions: int, config: DQNConfig, gamma: float = 0.99) -> None:
        super().__init__()
        self.config = config
        self.gamma = gamma
        self.n_actions = n_actions
        self.q = QNetwork(obs_dim, n_actions, config.hidden, config.layers)
        self.q_target = frozen_copy(QNetwork(obs_dim, n_actions, config.hidden, config.layers), self.q)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.lr, fused=True)
        self.epsilon = config.epsilon_start

    @property
    def policy(self) -> nn.Module:
        """The Q network (the greedy policy is its argmax)."""
        return self.q

    def deterministic_policy(self) -> nn.Module:
        """The greedy action's index (`GreedyAction` of the Q network)."""
        return GreedyAction(linear_layers(self.q.net))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizer by name."""
        return {"q": self.optimizer}

    def on_env_step(self, env_step: int) -> None:
        """Epsilon at `env_step`: linear from `epsilon_start` to `epsilon_end` over `epsilon_decay_steps`."""
        cfg = self.config
        fraction = min(1.0, env_step / cfg.epsilon_decay_steps)
        self.epsilon = cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)

    def epoch_metrics(self) -> dict[str, float]:
        """The exploration rate."""
        return {metric_keys.EPSILON: self.epsilon}

    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int = 0) -> UpdateInfo:
        """One Huber-loss step towards the double-DQN target; then the target network moves by `tau`."""
        with torch.no_grad():
            best_next = self.q(batch.next_obs).argmax(dim=-1, keepdim=True)
            next_q = self.q_target(batch.next_obs).gather(-1, best_next).squeeze(-1)
            target = batch.reward + self.gamma * (1.0 - batch.done) * next_q
        q = (self.q(batch.obs) * batch.act).sum(dim=-1)
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        soft_update(self.q_target, self.q, self.config.tau)
        return {"q_loss": loss.detach(), "q": q.detach().mean()}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-hot actions `B x A`: greedy, or epsilon-greedy (uniform over all actions with probability epsilon)."""
        choice = self.q(obs).argmax(dim=-1)
        if not deterministic:
            n = obs.shape[0]
            explore = torch.rand(n, generator=generator, device=obs.device) < self.epsilon
            uniform = torch.randint(self.n_actions, (n,), generator=generator, device=obs.device)
            choice = torch.where(explore, uniform, choice)
        return F.one_hot(choice, self.n_actions).to(obs.dtype)
