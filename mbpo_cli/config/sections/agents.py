"""The base agent's sections: how the loop feeds it, and each agent's hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mbpo_cli.config.rules import NON_NEGATIVE, POSITIVE, SMOOTHING, UNIT, checked

AGENTS = ("sac", "td3", "ddpg", "dqn")
"""The base agents (`agent.name`)."""


@dataclass(frozen=True)
class AgentConfig:
    """The base agent and how the loop feeds it (every agent)."""

    name: Literal["sac", "td3", "ddpg", "dqn"] = "sac"
    """sac, td3 or ddpg (continuous Box actions), or dqn (Discrete actions); each has its own section."""
    updates_per_step: int = field(default=20, metadata=checked(POSITIVE))
    """G: agent updates per real env step."""
    batch_size: int = field(default=256, metadata=checked(POSITIVE))
    """Minibatch size."""
    real_ratio: float = field(default=0.05, metadata=checked(UNIT))
    """Fraction of each minibatch drawn from real data (the rest from the model buffer)."""
    gamma: float = field(default=0.99, metadata=checked(UNIT))
    """Discount."""
    buffer_size: int = field(default=1_000_000, metadata=checked(POSITIVE))
    """Capacity of the real replay buffer."""


@dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (Haarnoja et al. 2018): twin critics, a tanh-Gaussian actor, a learned temperature."""

    lr: float = field(default=3e-4, metadata=checked(POSITIVE))
    """Adam learning rate for actor, critics and temperature."""
    tau: float = field(default=5e-3, metadata=checked(POSITIVE, SMOOTHING))
    """Target network smoothing coefficient."""
    target_entropy: float | None = None
    """Entropy target for automatic temperature tuning (None: -action_dim)."""
    hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer of actor and critics."""
    layers: int = field(default=2, metadata=checked(POSITIVE))
    """Hidden layers of actor and critics."""
    init_alpha: float = field(default=1.0, metadata=checked(POSITIVE))
    """Initial entropy temperature."""


@dataclass(frozen=True)
class TD3Config:
    """TD3 (Fujimoto et al. 2018): twin critics, target policy smoothing, delayed actor updates."""

    lr: float = field(default=3e-4, metadata=checked(POSITIVE))
    """Adam learning rate for actor and critics."""
    tau: float = field(default=5e-3, metadata=checked(POSITIVE, SMOOTHING))
    """Target network smoothing coefficient (targets move on actor updates)."""
    hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer of actor and critics."""
    layers: int = field(default=2, metadata=checked(POSITIVE))
    """Hidden layers of actor and critics."""
    policy_noise: float = field(default=0.2, metadata=checked(NON_NEGATIVE))
    """Std of the Gaussian noise added to target actions (actions in [-1, 1])."""
    noise_clip: float = field(default=0.5, metadata=checked(NON_NEGATIVE))
    """Clip of the target action noise."""
    policy_delay: int = field(default=2, metadata=checked(POSITIVE))
    """Critic updates per actor (and target) update."""
    exploration_noise: float = field(default=0.1, metadata=checked(NON_NEGATIVE))
    """Std of the Gaussian noise on the actor's action when acting to explore (real steps and rollouts)."""


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG (Lillicrap et al. 2016): one critic and a deterministic actor, both with soft target copies."""

    lr: float = field(default=3e-4, metadata=checked(POSITIVE))
    """Adam learning rate for actor and critic."""
    tau: float = field(default=5e-3, metadata=checked(POSITIVE, SMOOTHING))
    """Target network smoothing coefficient."""
    hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer of actor and critic."""
    layers: int = field(default=2, metadata=checked(POSITIVE))
    """Hidden layers of actor and critic."""
    exploration_noise: float = field(default=0.1, metadata=checked(NON_NEGATIVE))
    """Std of the Gaussian noise on the actor's action when acting to explore (real steps and rollouts)."""


@dataclass(frozen=True)
class DQNConfig:
    """Double DQN (van Hasselt et al. 2016) with a soft-updated target network and an epsilon-greedy policy."""

    lr: float = field(default=1e-3, metadata=checked(POSITIVE))
    """Adam learning rate."""
    tau: float = field(default=5e-3, metadata=checked(POSITIVE, SMOOTHING))
    """Target network smoothing coefficient (1.0 with a large G is a hard copy every update)."""
    hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer."""
    layers: int = field(default=2, metadata=checked(POSITIVE))
    """Hidden layers (ReLU)."""
    epsilon_start: float = field(default=1.0, metadata=checked(UNIT))
    """Exploration rate at env step 0."""
    epsilon_end: float = field(default=0.05, metadata=checked(UNIT))
    """Exploration rate once the decay is over (also in model rollouts)."""
    epsilon_decay_steps: int = field(default=2500, metadata=checked(POSITIVE))
    """Real env steps over which epsilon falls linearly from start to end."""
    max_grad_norm: float = field(default=10.0, metadata=checked(POSITIVE))
    """Gradient norm clip of each update."""
