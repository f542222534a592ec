"""Branched model rollouts (on the schedule, or with the adaptive horizon) and the rollout-length schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mbpo_cli.agents.base import Agent, lone_act
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.model_env import ModelEnv
from mbpo_cli.nn.batch import Batch


def rollout_length(epoch: int, schedule: tuple[int, int, int, int]) -> int:
    """k at `epoch`: min_k before min_epoch, max_k after max_epoch, floored linear interpolation between."""
    min_epoch, max_epoch, min_k, max_k = schedule
    if epoch <= min_epoch:
        return min_k
    if epoch >= max_epoch:
        return max_k
    fraction = (epoch - min_epoch) / (max_epoch - min_epoch)
    return math.floor(min_k + fraction * (max_k - min_k))


def rollouts_kept(epoch_length: int, train_freq: int, retain_epochs: int) -> int:
    """Generations of rollouts the model buffer keeps: retain_epochs * (rollouts per epoch)."""
    return retain_epochs * max(1, epoch_length // train_freq)


def model_buffer_capacity(k: int, rollout_batch: int, epoch_length: int, train_freq: int, retain_epochs: int) -> int:
    """Transitions kept: retain_epochs * k * rollout_batch * (rollouts per epoch)."""
    return k * rollout_batch * rollouts_kept(epoch_length, train_freq, retain_epochs)


@dataclass(frozen=True)
class RolloutStats:
    """What one branched rollout added."""

    transitions: int
    """Model transitions written to the model buffer."""
    mean_length: float
    """Mean number of steps a branch survived (at most k)."""
    mean_reward: float
    """Mean predicted reward."""


@torch.no_grad()
def branched_rollout(env: ModelEnv, agent: Agent, start_obs: torch.Tensor, k: int, buffer: ReplayBuffer,
                     generator: torch.Generator) -> RolloutStats:
    """Roll the current (exploring) policy for k steps of the model `env` from `start_obs` (`N x D`).

    Each sample at each step uses a random rollout member and samples from its Gaussian (`ModelEnv.step`);
    terminated branches stop. Every transition goes into `buffer`.
    """
    obs = start_obs
    transitions = 0
    reward_sum = torch.zeros((), device=obs.device)
    for _ in range(k):
        act = lone_act(agent, obs, deterministic=False, generator=generator)
        reward, next_obs, done = env.step(obs, act, generator)
        buffer.add(Batch(obs, act, reward, next_obs, done.float()))
        transitions += obs.shape[0]
        reward_sum += reward.sum()
        alive = ~done
        if not bool(alive.any()):
            break
        obs = next_obs[alive]
    n = start_obs.shape[0]
    return RolloutStats(transitions, transitions / n, float(reward_sum) / max(transitions, 1))


ADAPTIVE_QUANTILE = 0.95
"""The first step's disagreement quantile that `rollout.adaptive_scale` multiplies into the threshold."""


@dataclass(frozen=True)
class AdaptiveStats:
    """What one uncertainty-adaptive rollout did."""

    transitions: int
    """Model transitions written to the model buffer."""
    lengths: torch.Tensor
    """`N`: steps each branch kept (0 to the maximum length)."""
    threshold: float
    """The disagreement above which a branch stopped."""
    stopped_uncertain: float
    """Fraction of branches stopped by the threshold (the rest terminated or reached the maximum)."""
    mean_reward: float
    """Mean predicted reward of the kept transitions."""

    def metrics(self) -> dict[str, float]:
        """The realized branch lengths (mean, p10, p90), the threshold and the stop fraction, for the registry."""
        lengths = self.lengths.float()
        p10, p90 = torch.quantile(lengths, torch.tensor([0.1, 0.9], device=lengths.device)).tolist()
        return {metric_keys.ROLLOUT_LENGTH_MEAN: float(lengths.mean()), metric_keys.ROLLOUT_LENGTH_P10: p10,
                metric_keys.ROLLOUT_LENGTH_P90: p90, metric_keys.ROLLOUT_THRESHOLD: self.threshold,
                metric_keys.ROLLOUT_STOPPED_UNCERTAIN: self.stopped_uncertain,
                "rollout_transitions": float(self.transitions)}


@torch.no_grad()
def adaptive_rollout(env: ModelEnv, agent: Agent, start_obs: torch.Tensor, max_length: int, scale: float,
                     buffer: ReplayBuffer, generator: torch.Generator) -> AdaptiveStats:
    """Branch from `start_obs` (`N x D`) while the rollout members of `env` agree, for at most `max_length` steps.

    Each step computes every rollout member on every live branch, measures their disagreement (`N`, see
    `MemberPredictions.disagreement`), and keeps a branch's transition only while that disagreement is at or under
    the threshold: `scale` times the `ADAPTIVE_QUANTILE` quantile of the first step's disagreement. A kept
    transition is sampled from a uniformly random member's Gaussian (`ModelEnv.step_from`); terminated branches
    stop too.
    """
    n, device = start_obs.shape[0], start_obs.device
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    live = torch.arange(n, device=device)
    obs = start_obs
    threshold = math.inf
    transitions = 0
    reward_sum = torch.zeros((), device=device)
    for step in range(max_length):
        act = lone_act(agent, obs, deterministic=False, generator=generator)
        predictions = env.predict(obs, act)
        uncertainty = predictions.disagreement()
        if step == 0:
            threshold = scale * float(torch.quantile(uncertainty, ADAPTIVE_QUANTILE))
        trusted = uncertainty <= threshold
        reward, next_obs, done = env.step_from(predictions, obs, act, generator)
        buffer.add(Batch(obs[trusted], act[trusted], reward[trusted], next_obs[trusted], done[trusted].float()))
        transitions += int(trusted.sum())
        reward_sum += reward[trusted].sum()
        lengths[live[trusted]] += 1
        stopped[live[~trusted]] = True
        alive = trusted & ~done
        if not bool(alive.any()):
            break
        obs, live = next_obs[alive], live[alive]
    return AdaptiveStats(transitions, lengths, threshold, float(stopped.float().mean()),
                         float(reward_sum) / max(transitions, 1))
