"""The learned model as an environment (what mbrl-lib calls a model environment): the ensemble, the members that
roll out, the termination that ends a branch and the reward that pays a step. Branched rollouts, the adaptive
horizon's rollouts and the model diagnostics all step the model through one `ModelEnv`; the training loop builds
it in one place (`mbpo_cli.engine.loop.model_env`).

DHMBPO's model is met otherwise (`mbpo_cli.agents.value_expansion.Dynamics`): its rollouts run in normalized
observation space with noise drawn in advance and gradients through the steps, and its distribution rollouts reuse
the training rollout itself so that both sample alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from mbpo_cli.models.ensemble import GaussianEnsemble, disagreement
from mbpo_cli.models.termination.custom import RewardFn
from mbpo_cli.models.termination.known import TerminationFn


class ModelStep(NamedTuple):
    """One model step of `N` states."""

    reward: torch.Tensor
    """`N`: the model's reward, or the custom reward function's."""
    next_obs: torch.Tensor
    """`N x D`."""
    done: torch.Tensor
    """`N` bool: the next state terminates."""


class MemberPredictions(NamedTuple):
    """Every rollout member's Gaussian over `[reward, next_obs - obs]` for the same `N` states."""

    mean: torch.Tensor
    """`M x N x (1 + D)`."""
    logvar: torch.Tensor | None
    """`M x N x (1 + D)` (None when the model is deterministic)."""

    def disagreement(self) -> torch.Tensor:
        """`N`: how much the members disagree about each next state (`disagreement`, next-state dimensions only)."""
        return disagreement(self.mean[..., 1:], None if self.logvar is None else self.logvar[..., 1:])


@dataclass(frozen=True)
class ModelEnv:
    """The model as rollouts and diagnostics step it: the ensemble, its rollout members, the termination and the
    reward (the model's own unless `reward_fn` gives it)."""

    model: GaussianEnsemble
    """A lone ensemble (a pack of one)."""
    members: torch.Tensor
    """`M` member indices (the elites, or every member with `model.use_elites: false`)."""
    terminated: TerminationFn
    """Next observations `N x D` -> bool `N` (the run's known, learned, custom or never function)."""
    reward_fn: RewardFn | None = None
    """A custom reward `(obs, act, next_obs) -> N` (None: the model's prediction)."""

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator) -> ModelStep:
        """A sampled step of `N` states: each from a uniformly random member's Gaussian (`GaussianEnsemble.sample`)."""
        reward, next_obs = self.model.sample(obs.unsqueeze(0), act.unsqueeze(0), [generator], self.members.unsqueeze(0))
        return self._outcome(obs, act, reward[0], next_obs[0])

    @torch.no_grad()
    def mean_step(self, obs: torch.Tensor, act: torch.Tensor) -> ModelStep:
        """The members' average prediction, no sampling."""
        reward, next_obs = self.model.mean_step(obs.unsqueeze(0), act.unsqueeze(0), self.members.unsqueeze(0))
        return self._outcome(obs, act, reward[0], next_obs[0])

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> MemberPredictions:
        """Every rollout member on every one of the `N` states (what the adaptive horizon measures)."""
        mean, logvar = self.model.predict_members(obs.unsqueeze(0), act.unsqueeze(0), self.members.unsqueeze(0))
        return MemberPredictions(mean[0], None if logvar is None else logvar[0])

    @torch.no_grad()
    def step_from(self, predictions: MemberPredictions, obs: torch.Tensor, act: torch.Tensor,
                  generator: torch.Generator) -> ModelStep:
        """A sampled step from `predictions` of `obs`, `act`: each state from a uniformly random member's Gaussian
        (its mean when the model is deterministic), as `step` samples but from predictions already made."""
        mean, logvar = predictions
        n = obs.shape[0]
        pick = torch.randint(self.members.shape[0], (n,), generator=generator, device=obs.device)
        rows = torch.arange(n, device=obs.device)
        out = mean[pick, rows]
        if logvar is not None:
            noise = torch.randn(out.shape, generator=generator, device=obs.device, dtype=out.dtype)
            out = out + noise * torch.exp(0.5 * logvar[pick, rows])
        return self._outcome(obs, act, out[:, 0], obs + out[:, 1:])

    def _outcome(self, obs: torch.Tensor, act: torch.Tensor, reward: torch.Tensor,
                 next_obs: torch.Tensor) -> ModelStep:
        """The step with its reward (the custom function's when there is one) and its termination."""
        if self.reward_fn is not None:
            reward = self.reward_fn(obs, act, next_obs)
        return ModelStep(reward, next_obs, self.terminated(next_obs))
