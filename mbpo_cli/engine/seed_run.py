"""One seed's own part of a run: its environments, data, random streams and bookkeeping.

A run trains a pack of S seeds in lockstep, every seed taking the same real steps (a lone run is a pack of one).
What each seed holds for itself is a `SeedRun`; the networks hold every seed at once along their seed axis
(`mbpo_cli.nn.seeds`), and the counters every seed shares (env step, rollout length, retrain step) are the run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from mbpo_cli.engine.buffer import ReplayBuffer


@dataclass
class SeedRun:
    """One seed's environments, buffers, random streams and episode bookkeeping."""

    seed: int
    env: gym.Env
    eval_env: gym.Env
    obs: np.ndarray
    """The current observation `D` of `env`."""
    rng: np.random.Generator
    """Exploration's uniform random actions."""
    generators: dict[str, torch.Generator]
    """The seed's torch streams by name (`mbpo_cli.engine.state.GENERATORS`)."""
    real_buffer: ReplayBuffer
    model_buffer: ReplayBuffer | None
    """MBPO's branched rollouts (None without a model)."""
    initial_states: torch.Tensor | None = None
    """Observations of environment resets `P x D` that rollouts branch from (`rollout.from_initial_states`)."""
    episode_return: float = 0.0
    episode_length: int = 0
    episode_returns: list[float] = field(default_factory=list)
    """Returns of the training episodes finished in the current epoch."""
    model_info: dict[str, float] = field(default_factory=dict)
    """The seed's last retrain and rollout, as metrics (holdout losses, epochs, branch lengths)."""
    model_generations: list[int] = field(default_factory=list)
    """Transitions of each rollout generation in the model buffer, oldest first (`rollout.adaptive` only)."""
    index: int = 0
    """The seed's place in its pack as built (what events name it by: a seed that fails leaves the pack, and the
    others keep their index)."""
