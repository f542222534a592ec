"""Soft actor-critic: twin critics as one batched network, a tanh-Gaussian actor, learned temperature.

Actions live in `[-1, 1]^A`; the environment layer rescales them to the task's bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mbpo_cli.config.schema import SACConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.graphs import CapturedStep, capture_step, set_capturable
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


class TwinCritic(nn.Module):
    """Two Q networks evaluated as one batched network: `(obs, act) -> 2 x B`."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = BatchedMLP(2, obs_dim + act_dim, 1, hidden, layers)

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, params: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Q values `2 x B` for `B x obs`, `B x A`."""
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(2, -1, -1)
        return self.net(x, params).squeeze(-1)


@dataclass
class UpdateInfo:
    """Losses of one SAC update, kept on the device (read once per epoch)."""

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor
    alpha_loss: torch.Tensor
    alpha: torch.Tensor
    entropy: torch.Tensor


class SAC(nn.Module):
    """The agent: networks, target critics, temperature and their optimizers."""

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig) -> None:
        super().__init__()
        self.config = config
        self.actor = Actor(obs_dim, act_dim, config.hidden, config.layers)
        self.critic = TwinCritic(obs_dim, act_dim, config.hidden, config.layers)
        self.critic_target = TwinCritic(obs_dim, act_dim, config.hidden, config.layers)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        target = config.target_entropy if config.target_entropy is not None else -float(act_dim)
        self.register_buffer("target_entropy", torch.tensor(target))
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.lr, fused=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.lr, fused=True)
        self.graph: CapturedStep[UpdateInfo] | None = None
        self.graph_shape: torch.Size | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (their states belong in a checkpoint)."""
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "alpha": self.alpha_optimizer}

    def update(self, batch: Batch, generator: torch.Generator) -> UpdateInfo:
        """One gradient step on critics, actor and temperature from a minibatch of `B` transitions.

        The policy noise (`2 x B x A`: next-state actions, then current-state actions) is drawn from
        `generator` here; the step itself runs as a captured CUDA graph once `use_cuda_graph` has
        installed one for this minibatch shape, else eagerly. The returned tensors are valid until the next update.
        """
        noise = torch.randn((2, *batch.act.shape), generator=generator, device=batch.act.device,
                            dtype=batch.act.dtype)
        if self.graph is not None and batch.obs.shape == self.graph_shape:
            return self.graph(*batch, noise)
        return self.update_with_noise(batch, noise)

    def use_cuda_graph(self, batch: Batch, generator: torch.Generator) -> str:
        """Capture the update for minibatches shaped like `batch` (CUDA only); says how updates will run.

        Capture and its check against eager execution leave the agent's state as it was; `generator`
        draws only the check's noise (pass a dedicated one to keep the training streams untouched).
        Optimizer states restored from a checkpoint must be loaded before this call.
        """
        noise = torch.randn((2, *batch.act.shape), generator=generator, device=batch.act.device,
                            dtype=batch.act.dtype)

        def step(obs: torch.Tensor, act: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                 done: torch.Tensor, noise: torch.Tensor) -> UpdateInfo:
            return self.update_with_noise(Batch(obs, act, reward, next_obs, done), noise)

        self.graph, mode = capture_step(step, [*batch, noise], self, list(self.optimizers().values()))
        self.graph_shape = batch.obs.shape
        return mode

    def load_optimizer_states(self, states: dict[str, dict]) -> None:
        """Load optimizer states saved by `optimizers()` (any device); updates run eagerly until recaptured."""
        self.graph = None
        for name, opt in self.optimizers().items():
            opt.load_state_dict(states[name])
        set_capturable(list(self.optimizers().values()), False)

    def update_with_noise(self, batch: Batch, noise: torch.Tensor) -> UpdateInfo:
        """The update as a pure function of the minibatch and the policy noise `2 x B x A` (capturable)."""
        cfg = self.config
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(batch.next_obs, noise=noise[0])
            next_q = self.critic_target(batch.next_obs, next_act).min(dim=0).values
            target = batch.reward + cfg.gamma * (1.0 - batch.done) * (next_q - alpha * next_logp)
        q = self.critic(batch.obs, batch.act)
        critic_loss = 0.5 * (q - target).pow(2).mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        act, logp = self.actor.sample(batch.obs, noise=noise[1])
        frozen = [p.detach() for p in self.critic.parameters()]
        q_pi = self.critic(batch.obs, act, frozen).min(dim=0).values
        actor_loss = (alpha * logp - q_pi).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau)
        return UpdateInfo(critic_loss.detach(), actor_loss.detach(), alpha_loss.detach(), alpha,
                          -logp.detach().mean())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions `B x A` in `[-1, 1]` for observations `B x obs`."""
        if deterministic:
            return self.actor.mean_action(obs)
        return self.actor.sample(obs, generator)[0]
