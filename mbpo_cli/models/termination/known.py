"""Known termination functions of the paper's tasks, vectorized in torch.

Each maps next observations `N x D` to a boolean `N` tensor (True = the episode terminates). Rollouts
in the model stop where these are True. Time-limit truncation is never termination.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TerminationFn = Callable[[torch.Tensor], torch.Tensor]


def _finite(obs: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(obs).all(dim=-1)


def hopper(obs: torch.Tensor) -> torch.Tensor:
    """Healthy iff finite, height > 0.7, |angle| < 0.2 and every |obs[1:]| < 100."""
    height, angle = obs[:, 0], obs[:, 1]
    healthy = _finite(obs) & (obs[:, 1:].abs() < 100).all(dim=-1) & (height > 0.7) & (angle.abs() < 0.2)
    return ~healthy


def walker2d(obs: torch.Tensor) -> torch.Tensor:
    """Healthy iff 0.8 < height < 2.0 and -1 < angle < 1."""
    height, angle = obs[:, 0], obs[:, 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


def ant(obs: torch.Tensor) -> torch.Tensor:
    """Healthy iff finite and 0.2 <= z <= 1.0 (truncated 27-dim observation, z first)."""
    z = obs[:, 0]
    return ~(_finite(obs) & (z >= 0.2) & (z <= 1.0))


def humanoid(obs: torch.Tensor) -> torch.Tensor:
    """Terminates iff z < 1.0 or z > 2.0 (z first)."""
    z = obs[:, 0]
    return (z < 1.0) | (z > 2.0)


def inverted_pendulum(obs: torch.Tensor) -> torch.Tensor:
    """Healthy iff finite and |pole angle (obs[1])| <= 0.2."""
    return ~(_finite(obs) & (obs[:, 1].abs() <= 0.2))


def inverted_double_pendulum(obs: torch.Tensor) -> torch.Tensor:
    """Terminates iff the tip height 0.6 cos(a) + 0.6 cos(a + b) <= 1.

    The v5 observation holds sin(a), sin(b) at [1:3] and cos(a), cos(b) at [3:5] for the two hinge
    angles (b relative to a); both poles are 0.6 long.
    """
    sin_a, sin_b, cos_a, cos_b = obs[:, 1], obs[:, 2], obs[:, 3], obs[:, 4]
    tip = 0.6 * cos_a + 0.6 * (cos_a * cos_b - sin_a * sin_b)
    return tip <= 1.0


def never(obs: torch.Tensor) -> torch.Tensor:
    """Never terminates (HalfCheetah, and any task without a known function)."""
    return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)


TERMINATION_FNS: dict[str, TerminationFn] = {
    "hopper": hopper,
    "walker2d": walker2d,
    "halfcheetah": never,
    "ant": ant,
    "humanoid": humanoid,
    "inverted_pendulum": inverted_pendulum,
    "inverted_double_pendulum": inverted_double_pendulum,
    "never": never,
}

_BY_ENV_PREFIX = {
    "Hopper-": "hopper",
    "Walker2d-": "walker2d",
    "HalfCheetah-": "halfcheetah",
    "Ant-": "ant",
    "Humanoid-": "humanoid",
    "InvertedPendulum-": "inverted_pendulum",
    "InvertedDoublePendulum-": "inverted_double_pendulum",
}


def known_task(env_id: str) -> str | None:
    """The task whose termination function `env_id` has (`Hopper-v5` -> hopper), or None for another task."""
    for prefix, name in _BY_ENV_PREFIX.items():
        if env_id.startswith(prefix):
            return name
    return None


def termination_name(setting: str, env_id: str) -> str | None:
    """The name of the function `env.termination: setting` stands for, for a task name, known, auto or never.

    known picks by env id (None when the task has no known function); auto does too, falling back to never.
    """
    if setting == "known":
        return known_task(env_id)
    if setting == "auto":
        return known_task(env_id) or "never"
    return setting if setting in TERMINATION_FNS else None
