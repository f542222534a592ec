"""Verification of an exported policy: the file's actions against the in-tool policy's on the observations of
seeded episodes, and returns over seeded episodes (an INT8 file's, beside the float policy's).

A policy here is an :data:`Act`: observations ``B x obs`` float32 -> actions ``B x act`` float32 or indices ``B``, as
the task takes them (the exported file, the program run eagerly, or the agent as `mbpo eval` acts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mbpo_cli.agents.base import lone_act
from mbpo_cli.agents.factory import BuiltAgent
from mbpo_cli.engine.envs import EnvSpec, to_env_action
from mbpo_cli.engine.episodes import EnvPolicy, run_episode

TOLERANCE = 1e-5
"""Largest absolute difference allowed between the exported file's actions and the in-tool policy's (float export)."""

Act = Callable[[np.ndarray], np.ndarray]
"""A policy as the task sees it: observations ``B x obs`` float32 -> actions ``B x act`` float32 or indices ``B``."""


class VerificationError(RuntimeError):
    """The exported file does not act as the run's policy (one line; the CLI exits 1; nothing is written)."""


def module_act(program: nn.Module) -> Act:
    """``program`` run eagerly by PyTorch."""
    return lambda obs: program(torch.from_numpy(obs)).numpy()


def tool_act(agent: BuiltAgent, spec: EnvSpec) -> Act:
    """The agent's deterministic policy as `mbpo eval` acts: the agent's action, then ``to_env_action`` per row."""

    def act(obs: np.ndarray) -> np.ndarray:
        actions = lone_act(agent, torch.from_numpy(obs), deterministic=True).numpy()
        return np.stack([np.asarray(to_env_action(a, spec)) for a in actions])

    return act


def env_action(actions: np.ndarray) -> np.ndarray | int:
    """The first action of a batch, as ``env.step`` takes it."""
    action = actions[0]
    return int(action) if action.ndim == 0 else action


def as_row(obs: np.ndarray) -> np.ndarray:
    """One observation as a batch of one, ``1 x obs`` float32."""
    return np.asarray(obs, dtype=np.float32).reshape(1, -1)


def one_at_a_time(act: Act) -> EnvPolicy:
    """``act`` on one observation at a time (a batch of one), as an episode plays it."""
    return lambda obs: env_action(act(as_row(obs)))


def record_observations(env: gym.Env, act: Act, count: int, seed: int) -> tuple[np.ndarray, int]:
    """The first ``count`` observations ``count x obs`` met acting with ``act`` over episodes reset with seeds
    ``seed, seed + 1, ...``, and how many episodes they came from."""
    seen: list[np.ndarray] = []
    episodes = 0
    while len(seen) < count:
        episode = run_episode(env, one_at_a_time(act), seed + episodes, count - len(seen), keep_observations=True)
        seen += episode.observations
        episodes += 1
    return np.stack(seen), episodes


def episode_returns(env: gym.Env, act: Act, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes reset with seeds ``seed, seed + 1, ...``, one observation at a time."""
    return [run_episode(env, one_at_a_time(act), seed + i).total_return for i in range(episodes)]


@dataclass(frozen=True)
class Comparison:
    """How a file's actions compare with the policy's on the same observations."""

    observations: int
    max_deviation: float
    """Largest absolute difference of an action component (DQN: of the action index; 0 when all agree)."""
    differing: int
    """Observations whose action differs by more than :data:`TOLERANCE` (DQN: whose index differs)."""


def compare(actions: np.ndarray, reference: np.ndarray) -> Comparison:
    """``actions`` against ``reference`` (same shape and dtype, else VerificationError); NaN counts as differing."""
    if actions.shape != reference.shape or actions.dtype != reference.dtype:
        raise VerificationError(f"the exported file returned {actions.dtype} actions of shape {actions.shape}; "
                                f"the policy gives {reference.dtype} of shape {reference.shape}")
    deviation = np.abs(actions.astype(np.float64) - reference.astype(np.float64)).reshape(len(actions), -1)
    worst = deviation.max(axis=1)
    return Comparison(observations=len(actions), max_deviation=float(worst.max()),
                      differing=int(np.count_nonzero(~(worst <= TOLERANCE))))


def check_file(act: Act, obs: np.ndarray, reference: np.ndarray) -> Comparison:
    """A file's actions against ``reference``, for the whole batch ``N x obs`` and for one observation at a time
    (the batch dimension is dynamic, and INT8 scales its activations per batch): the worse of the two."""
    batch = compare(act(obs), reference)
    single = compare(np.concatenate([act(obs[i:i + 1]) for i in range(len(obs))]), reference)
    return Comparison(observations=len(obs), max_deviation=max(batch.max_deviation, single.max_deviation),
                      differing=max(batch.differing, single.differing))


def mismatch(check: Comparison, discrete: bool, out: Path) -> VerificationError:
    if discrete:
        what = f"gives another greedy action than the run's policy on {check.differing} of {check.observations}"
    else:
        what = (f"differs from the run's policy by up to {check.max_deviation:.3g} (tolerance {TOLERANCE:g}) on "
                f"{check.differing} of {check.observations}")
    return VerificationError(f"verification failed: the exported policy {what} observations; {out} was not written")
