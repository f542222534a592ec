"""Branched model rollouts and the rollout-length schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mbpo_cli.agents.base import Agent
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.task import RewardFn
from mbpo_cli.models.ensemble import GaussianEnsemble
from mbpo_cli.models.termination import TerminationFn
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


def model_buffer_capacity(k: int, rollout_batch: int, epoch_length: int, train_freq: int, retain_epochs: int) -> int:
    """Transitions kept: retain_epochs * k * rollout_batch * (rollouts per epoch)."""
    return retain_epochs * k * rollout_batch * max(1, epoch_length // train_freq)


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
def branched_rollout(
    model: GaussianEnsemble,
    agent: Agent,
    start_obs: torch.Tensor,
    k: int,
    members: torch.Tensor,
    terminated: TerminationFn,
    buffer: ReplayBuffer,
    generator: torch.Generator,
    reward_fn: RewardFn | None = None,
) -> RolloutStats:
    """Roll the current (exploring) policy for k model steps from `start_obs` (`N x D`).

    Each sample at each step uses a random member of `members` and samples from its Gaussian; the reward
    is the model's unless `reward_fn` gives it; terminated branches stop. Every transition goes into `buffer`.
    """
    obs = start_obs
    transitions = 0
    reward_sum = torch.zeros((), device=obs.device)
    for _ in range(k):
        act = agent.act(obs, deterministic=False, generator=generator)
        reward, next_obs = model.sample(obs, act, generator, members)
        if reward_fn is not None:
            reward = reward_fn(obs, act, next_obs)
        done = terminated(next_obs)
        buffer.add(Batch(obs, act, reward, next_obs, done.float()))
        transitions += obs.shape[0]
        reward_sum += reward.sum()
        alive = ~done
        if not bool(alive.any()):
            break
        obs = next_obs[alive]
    n = start_obs.shape[0]
    return RolloutStats(transitions, transitions / n, float(reward_sum) / max(transitions, 1))
