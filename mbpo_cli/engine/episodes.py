"""Real-environment episodes played by a policy, in one loop: a run's evaluations, `mbpo eval` and its video, and
`mbpo export`'s verification all play their episodes through `play_episode`.

A policy here is what the task takes: a callable from one observation (float32, `D`) to the action `env.step`
takes. `agent_policy` makes one of an agent (its greedy or mean action, or a sampled one, rescaled to the task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbpo_cli.agents.base import Agent, lone_act
from mbpo_cli.engine.envs import EnvSpec, to_env_action

EnvPolicy = Callable[[np.ndarray], np.ndarray | int]
"""One observation `D` (float32) -> the action `env.step` takes (a float vector within the task's bounds, or an
index)."""


@dataclass(frozen=True)
class Episode:
    """What one episode gave."""

    total_return: float
    """The sum of its rewards."""
    length: int
    """The steps it took."""
    observations: list[np.ndarray] = field(default_factory=list)
    """The observations the policy acted on (float32 `D` each), first to last; empty unless asked for."""


def play_episode(env: gym.Env, policy: EnvPolicy, obs: Any, max_steps: int | None = None,
                 keep_observations: bool = False, after_step: Callable[[], None] | None = None) -> Episode:
    """Play `policy` from `obs`, the observation of a reset already done, until the episode terminates or is
    truncated, or after `max_steps` steps; `after_step` is called after every step (a video grabs a frame)."""
    total, length, done = 0.0, 0, False
    kept: list[np.ndarray] = []
    while not done and (max_steps is None or length < max_steps):
        x = np.asarray(obs, dtype=np.float32)
        if keep_observations:
            kept.append(x)
        obs, reward, terminated, truncated, _ = env.step(policy(x))
        total += float(reward)
        length += 1
        done = terminated or truncated
        if after_step is not None:
            after_step()
    return Episode(total, length, kept)


def run_episode(env: gym.Env, policy: EnvPolicy, seed: int, max_steps: int | None = None,
                keep_observations: bool = False) -> Episode:
    """Reset `env` with `seed` and play one episode (see `play_episode`)."""
    obs, _ = env.reset(seed=seed)
    return play_episode(env, policy, obs, max_steps, keep_observations)


def agent_policy(agent: Agent, spec: EnvSpec, device: torch.device, deterministic: bool = True,
                 generator: torch.Generator | None = None) -> EnvPolicy:
    """The agent acting on one observation at a time on `device`: its greedy or mean action (`deterministic`), or
    one sampled with `generator`, as the task takes it (`to_env_action`)."""

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray | int:
        x = torch.as_tensor(obs, device=device).unsqueeze(0)
        return to_env_action(lone_act(agent, x, deterministic, generator)[0].cpu().numpy(), spec)

    return act


def evaluate(agent: Agent, env: gym.Env, spec: EnvSpec, episodes: int, seed: int, device: torch.device,
             deterministic: bool = True, generator: torch.Generator | None = None) -> tuple[list[float], list[int]]:
    """Returns and lengths of `episodes` episodes (greedy or mean actions by default) with resets seeded `seed,
    seed + 1, ...`."""
    policy = agent_policy(agent, spec, device, deterministic, generator)
    played = [run_episode(env, policy, seed + i) for i in range(episodes)]
    return [e.total_return for e in played], [e.length for e in played]
