"""DHMBPO's actor-critic (Kubo, Parmas and Ishii, TMLR 2025): a tanh-Gaussian actor on normalized observations, an
ensemble of critics with layer normalization and dropout whose output is scaled into learned bounds, their targets,
and a learned temperature, updated by value expansion through a training rollout of the model.

One update (`learn`), from `B` start states: a training rollout (see `mbpo_cli.agents.value_expansion`), with
gradients in a joint update, without in a critic-only one; the Q bounds' moving average from the rollout's
entropy-regularized rewards; a critic step on `(s_0, a_0)` towards the value-expansion target (the minimum of
`target_members` random target critics at `(s_H, a_H)`, clipped to the bounds); the targets' Polyak step; then, in a
joint update, an actor and temperature step on the rollout's return with the mean of the updated online critics at
`(s_H, a_H)`. The actor's gradient flows through the actions, the model's means, its reward and the critics' input,
never into the model's or the critics' weights. Every random draw comes from noise drawn outside the update, so an
update is a pure function of its start states and noise (and can be captured as a CUDA graph).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.agents.base import ActionSpace, Generators, UpdateInfo, frozen_copy, soft_update
from mbpo_cli.agents.networks import Standardize, tanh_policy
from mbpo_cli.agents.value_expansion import (
    Dynamics,
    Rollout,
    RolloutNoise,
    actor_return,
    discounts,
    quantiles,
    training_rollout,
    value_target,
)
from mbpo_cli.config.schema import DHMBPOConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.graphs import CapturedStep, capture_step
from mbpo_cli.nn.mlp import BatchedMLP
from mbpo_cli.nn.normed_mlp import Masks, NormedEnsembleMLP, dropout_masks, mask_size
from mbpo_cli.nn.seeds import SeedAxisError

MIN_STD = 1e-5
"""Added to the actor's softplus std."""


class DHMBPOActor(nn.Module):
    """Tanh-squashed Gaussian policy `obs -> action in [-1, 1]`: an MLP (SiLU) on observations normalized by the
    model's statistics (frozen between bursts), std `softplus(.) + 1e-5`."""

    obs_mean: torch.Tensor
    """`obs`: the observation normalizer's mean (copied from the model at each burst)."""
    obs_std: torch.Tensor
    """`obs`: its std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = BatchedMLP(1, obs_dim, 2 * act_dim, hidden, layers, activation=nn.SiLU)
        with torch.no_grad():
            for weight, bias in zip(self.net.weights, self.net.biases, strict=True):
                nn.init.orthogonal_(weight[0])
                bias.zero_()
        self.act_dim = act_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations `B x obs` -> normalized."""
        return (obs - self.obs_mean) / self.obs_std

    def dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std `B x A` of the Gaussian before the tanh, for normalized observations `B x obs`."""
        mean, raw_std = self.net(obs.unsqueeze(0)).squeeze(0).split(self.act_dim, dim=-1)
        return mean, F.softplus(raw_std) + MIN_STD

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action `B x A` for normalized observations and standard normal `noise` `B x A`, and its
        log-probability `B` (tanh correction included)."""
        mean, std = self.dist(obs)
        pre_tanh = mean + std * noise
        gaussian = -0.5 * noise.square() - std.log() - 0.5 * math.log(2.0 * math.pi)
        # log(1 - tanh(u)^2) written stably as 2 * (log 2 - u - softplus(-2u)).
        correction = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return torch.tanh(pre_tanh), (gaussian - correction).sum(dim=-1)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action `B x A` (tanh of the mean) for raw observations: what evaluation and export use."""
        return torch.tanh(self.dist(self.normalize(obs))[0])


class ScaledCritics(nn.Module):
    """`members` Q networks `(obs, act) -> z` (normalized observations) in one batched network, LayerNorm on the
    input of every layer after the first, dropout after every hidden layer, the output layer zero at the start; the
    agent reads `Q = c + w z` with its bounds' midpoint c and half-width w."""

    def __init__(self, obs_dim: int, act_dim: int, config: DHMBPOConfig) -> None:
        super().__init__()
        layers = config.critic_layers
        self.net = NormedEnsembleMLP(config.critic_members, obs_dim + act_dim, 1, config.critic_hidden, layers,
                                     norm_eps=[config.critic_norm_eps] * layers,
                                     dropout=[config.critic_dropout] * layers, zero_output=True)
        self.members = config.critic_members

    def forward(self, obs: torch.Tensor, act: torch.Tensor, masks: Masks | None = None,
                params: list[torch.Tensor] | None = None, members: torch.Tensor | None = None) -> torch.Tensor:
        """z `M x B` for `B x obs`, `B x A` (every member, or `members`); `masks` are the dropout masks (None: no
        dropout), `params` replace the weights (e.g. detached copies)."""
        m = self.members if members is None else members.shape[0]
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(m, -1, -1)
        return self.net(x, masks, params, members).squeeze(-1)


class DHMBPOAgent(nn.Module):
    """The actor, the critics with their targets and bounds, and the temperature; the optimizers of a burst.

    Not packed: it holds one seed (S = 1) and meets the engine with the seed axis of the base agents (`act` and
    `update` take `1 x B` tensors and one generator in a list); a pack of several seeds is refused.
    """

    action_space: ClassVar[ActionSpace] = "continuous"

    target_entropy: torch.Tensor
    """Scalar: the entropy the temperature steers towards."""
    q_bounds: torch.Tensor
    """`2`: lower and upper bound on Q (their moving average)."""
    bounds_set: torch.Tensor
    """Scalar bool: whether an update has set the bounds yet."""
    discount: torch.Tensor
    """`H + 1`: gamma^t (not saved: it follows the config)."""

    def __init__(self, obs_dim: int, act_dim: int, config: DHMBPOConfig, seeds: int = 1) -> None:
        super().__init__()
        if seeds != 1:
            raise SeedAxisError(f"DHMBPO's agent trains one seed at a time, not a pack of {seeds}")
        self.seeds = 1
        """S: always one (DHMBPO's agent is not packed)."""
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = DHMBPOActor(obs_dim, act_dim, config.actor_hidden, config.actor_layers)
        self.critic = ScaledCritics(obs_dim, act_dim, config)
        self.critic_target = frozen_copy(ScaledCritics(obs_dim, act_dim, config), self.critic)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        target = config.target_entropy if config.target_entropy is not None else -float(act_dim)
        self.register_buffer("target_entropy", torch.tensor(target))
        self.register_buffer("q_bounds", torch.zeros(2))
        self.register_buffer("bounds_set", torch.tensor(False))
        self.rollout_horizon = max(config.training_horizon, 1)
        """Model steps of the rollout an update makes: H, or one step for the critics' target when H = 0."""
        self.register_buffer("discount", discounts(config.gamma, self.rollout_horizon), persistent=False)
        self.dynamics: Dynamics | None = None
        self.actor_optimizer, self.critic_optimizer = self._optimizers()
        self.graphs: dict[tuple[torch.Size, bool], CapturedStep[UpdateInfo]] = {}

    # -- the engine's view ----------------------------------------------------------------------------

    def bind(self, dynamics: Dynamics) -> None:
        """The model (and termination) the training rollouts run through."""
        self.dynamics = dynamics

    @property
    def policy(self) -> nn.Module:
        """The actor (with its normalizer)."""
        return self.actor

    def deterministic_policy(self) -> nn.Module:
        """The actor's mean action: `tanh` of the mean of its Gaussian, on observations standardized by its
        normalizer."""
        actor = self.actor
        return tanh_policy(actor.net, actor.act_dim, Standardize(actor.obs_mean, actor.obs_std))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool, generators: Generators | None = None) -> torch.Tensor:
        """Actions `1 x B x A` in `[-1, 1]` for raw observations `1 x B x obs`: tanh of the mean, or a sample."""
        one = _lone_seed(obs)
        if deterministic:
            return self.actor.mean_action(one).unsqueeze(0)
        generator = None if generators is None else _one_generator(generators)
        noise = torch.randn(one.shape[0], self.act_dim, generator=generator, device=obs.device, dtype=obs.dtype)
        return self.actor.sample(self.actor.normalize(one), noise)[0].unsqueeze(0)

    def on_env_step(self, env_step: int) -> None:
        """Nothing: the policy is frozen while it collects."""

    def epoch_metrics(self) -> list[dict[str, float]]:
        """The temperature and the Q bounds (of the one seed)."""
        low, high = self.q_bounds.tolist()
        return [{"alpha": float(self.log_alpha.detach().exp()), "q_lower": low, "q_upper": high}]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """None that a checkpoint needs: every burst starts fresh Adam states (`new_optimizers`), and checkpoints
        fall between bursts."""
        return {}

    def load_optimizer_states(self, states: dict[str, dict]) -> None:
        """Nothing to load (see `optimizers`); updates run eagerly until recaptured."""
        self.graphs.clear()

    def new_optimizers(self) -> None:
        """Fresh Adam for the critics and for the actor with the temperature (the start of a burst); any captured
        update is dropped (it held the old optimizers' states)."""
        self.actor_optimizer, self.critic_optimizer = self._optimizers()
        self.graphs.clear()

    def _optimizers(self) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        lr = self.config.lr
        actor = torch.optim.Adam([*self.actor.parameters(), self.log_alpha], lr=lr, fused=True)
        return actor, torch.optim.Adam(self.critic.parameters(), lr=lr, fused=True)

    # -- updates --------------------------------------------------------------------------------------

    def noise_sizes(self, batch: int, critic_only: bool) -> tuple[int, int]:
        """Standard normal and uniform draws of one update from `batch` start states: the rollout's, then the
        target critics' draw; the online critics' dropout (twice in a joint update)."""
        cfg = self.config
        assert self.dynamics is not None, "bind the dynamics first"
        normal = RolloutNoise.size(self.rollout_horizon, batch, self.act_dim, self.obs_dim, self.dynamics.members)
        forwards = 1 if critic_only else 2
        uniform = forwards * mask_size(self.critic.net.mask_shapes(batch)) if cfg.critic_dropout > 0 else 0
        return normal + cfg.critic_members, uniform

    def learn(self, starts: torch.Tensor, generator: torch.Generator, critic_only: bool) -> UpdateInfo:
        """One update from normalized start states `B x obs`; its noise is drawn from `generator` here. Runs the
        captured CUDA graph of this shape and kind when one exists. The returned tensors are valid until the next
        update."""
        normal, uniform = self.noise_sizes(starts.shape[0], critic_only)
        noise = torch.randn(normal, generator=generator, device=starts.device)
        drops = torch.rand(uniform, generator=generator, device=starts.device)
        graph = self.graphs.get((starts.shape, critic_only))
        if graph is not None:
            return graph(starts, noise, drops)
        return self.update_with_noise(starts, noise, drops, critic_only)

    def update(self, batch: Batch, generators: Generators) -> UpdateInfo:
        """One joint update whose training rollouts start from the raw observations `batch.obs` (`1 x B x obs`; the
        model supplies the rest of the transitions); the values have the seed axis (`1`)."""
        info = self.learn(self.actor.normalize(_lone_seed(batch.obs)), _one_generator(generators), critic_only=False)
        return {key: value.reshape(1) for key, value in info.items()}

    def update_with_noise(self, starts: torch.Tensor, noise: torch.Tensor, drops: torch.Tensor,
                          critic_only: bool) -> UpdateInfo:
        """The update as a pure function of start states and noise (see the module)."""
        cfg = self.config
        assert self.dynamics is not None, "bind the dynamics first"
        batch = starts.shape[0]
        rollout_noise = RolloutNoise.read(noise, self.rollout_horizon, batch, self.act_dim, self.obs_dim,
                                          self.dynamics.members)
        pick = noise[-cfg.critic_members :].argsort()[: cfg.target_members]
        alpha = self.log_alpha.detach().exp()
        with torch.set_grad_enabled(not critic_only):
            rollout = training_rollout(self.actor.sample, self.dynamics, starts, rollout_noise)
        center, width = self.update_bounds(rollout, alpha)
        masks = self.dropout(drops, batch, 1 if critic_only else 2)

        with torch.no_grad():
            target = self.target_q(rollout.states[-1], rollout.actions[-1], pick, center, width)
            y = value_target(rollout, target, alpha, self.discount)
        q = center + width * self.critic(rollout.states[0].detach(), rollout.actions[0].detach(), masks[0])
        critic_loss = (q - y).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        info = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}
        if critic_only:
            return info

        actor_loss = self.actor_loss(rollout, masks[1], center, width, alpha)
        entropy = -rollout.logps[0].detach().mean()
        alpha_loss = -self.log_alpha.exp() * (self.target_entropy - entropy)
        self.actor_optimizer.zero_grad(set_to_none=True)
        (actor_loss + alpha_loss).backward()
        self.actor_optimizer.step()
        return {**info, "actor_loss": actor_loss.detach(), "alpha_loss": alpha_loss.detach(), "entropy": entropy}

    def actor_loss(self, rollout: Rollout, masks: Masks | None, center: torch.Tensor, width: torch.Tensor,
                   alpha: torch.Tensor) -> torch.Tensor:
        """Minus the mean return of the rollout, valued at `(s_H, a_H)` by the mean of the online critics (with
        dropout `masks`, their weights detached: the gradient reaches their input, not them). With H = 0, SAC's
        actor loss at the start states: minus the mean of Q(s_0, a_0) - alpha log pi(a_0 | s_0), no model in it."""
        frozen = self.critic.net.detached()
        if self.config.training_horizon == 0:
            q_bar = center + width * self.critic(rollout.states[0], rollout.actions[0], masks, frozen).mean(dim=0)
            return -(q_bar - alpha * rollout.logps[0]).mean()
        q_bar = center + width * self.critic(rollout.states[-1], rollout.actions[-1], masks, frozen).mean(dim=0)
        return -actor_return(rollout, q_bar, alpha, self.discount).mean()

    def dropout(self, drops: torch.Tensor, batch: int, forwards: int) -> list[Masks | None]:
        """The online critics' dropout masks of each of `forwards` forward passes on `batch` inputs, from uniform
        noise (None each without dropout)."""
        if not drops.numel():
            return [None] * forwards
        shapes = self.critic.net.mask_shapes(batch)
        rates = [self.config.critic_dropout] * len(shapes)
        size = mask_size(shapes)
        return [dropout_masks(drops[i * size : (i + 1) * size], shapes, rates) for i in range(forwards)]

    @torch.no_grad()
    def update_bounds(self, rollout: Rollout, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move the Q bounds towards the `bound_quantile` quantiles of the rollout's `r_t - alpha log pi_t`
        (t < H) divided by 1 - gamma (the first update sets them); their midpoint and half-width."""
        cfg = self.config
        low, high = quantiles(rollout.rewards - alpha * rollout.logps[:-1], cfg.bound_quantile)
        fresh = torch.stack([low, high]) / (1.0 - cfg.gamma)
        self.q_bounds.copy_(torch.where(self.bounds_set, self.q_bounds.lerp(fresh, cfg.bound_rate), fresh))
        self.bounds_set.fill_(True)
        return self.q_bounds.mean(), 0.5 * (self.q_bounds[1] - self.q_bounds[0])

    def target_q(self, obs: torch.Tensor, act: torch.Tensor, pick: torch.Tensor, center: torch.Tensor,
                 width: torch.Tensor) -> torch.Tensor:
        """`B`: the minimum of the target critics `pick` at `(obs, act)` (no dropout), scaled, clipped to the
        bounds."""
        q = center + width * self.critic_target(obs, act, members=pick)
        return q.min(dim=0).values.clamp(self.q_bounds[0], self.q_bounds[1])

    def use_cuda_graph(self, batch: Batch, generators: Generators) -> str:
        """`capture` for start states shaped like the raw observations `batch.obs` (`1 x B x obs`)."""
        return self.capture(self.actor.normalize(_lone_seed(batch.obs)), _one_generator(generators))

    def capture(self, starts: torch.Tensor, generator: torch.Generator) -> str:
        """Capture both kinds of update (joint, critic-only) for normalized start states shaped like `starts` (CUDA
        only); says how updates will run. The agent's state is left as it was; `generator` draws only the capture's
        noise. Call it after `new_optimizers` (a burst's start): the graphs hold the optimizers' states."""
        modes = []
        for critic_only in (False, True):
            normal, uniform = self.noise_sizes(starts.shape[0], critic_only)
            inputs = [starts, torch.randn(normal, generator=generator, device=starts.device),
                      torch.rand(uniform, generator=generator, device=starts.device)]

            def step(s: torch.Tensor, n: torch.Tensor, d: torch.Tensor, critic_only: bool = critic_only) -> UpdateInfo:
                return self.update_with_noise(s, n, d, critic_only)

            graph, mode = capture_step(step, inputs, self, [self.actor_optimizer, self.critic_optimizer])
            if graph is None:
                self.graphs.clear()
                return mode
            self.graphs[(starts.shape, critic_only)] = graph
            modes.append(mode)
        return modes[0]


def _lone_seed(tensor: torch.Tensor) -> torch.Tensor:
    """The one seed's rows `B x ...` of a `1 x B x ...` tensor (DHMBPO's agent is not packed)."""
    if tensor.shape[0] != 1:
        raise SeedAxisError(f"DHMBPO's agent trains one seed at a time, not a pack of {tensor.shape[0]}")
    return tensor[0]


def _one_generator(generators: Generators) -> torch.Generator:
    if len(generators) != 1:
        raise SeedAxisError(f"DHMBPO's agent trains one seed at a time, not a pack of {len(generators)}")
    return generators[0]
