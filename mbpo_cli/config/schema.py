"""The run configuration's schema: frozen dataclasses, one section each, every field documented.

A config file is YAML with these sections (every key optional, defaults as documented); loading,
overrides and validation are in `mbpo_cli.config.load`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

KNOWN_TERMINATIONS = ("hopper", "walker2d", "halfcheetah", "ant", "humanoid", "inverted_pendulum",
                      "inverted_double_pendulum")
"""Tasks whose termination function is known (`mbpo_cli.models.termination` implements each)."""


@dataclass(frozen=True)
class EnvConfig:
    """The task."""

    id: str = "InvertedPendulum-v5"
    """Gymnasium environment id (continuous Box action space)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make`, e.g. v5 observation options."""
    termination: str = "auto"
    """Termination function for model rollouts: auto (by env id), never, or a task name (hopper, ...)."""


@dataclass(frozen=True)
class ModelConfig:
    """The probabilistic ensemble dynamics model."""

    ensemble_size: int = 7
    """Number of ensemble members E."""
    elites: int = 5
    """Members with the lowest holdout loss used for rollouts."""
    hidden: int = 200
    """Units per hidden layer."""
    layers: int = 4
    """Number of hidden layers (SiLU)."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    """L2 coefficient per layer, hidden layers then output layer (layers + 1 values)."""
    deterministic: bool = False
    """Train with MSE and predict the mean instead of a Gaussian."""
    max_epochs: int | None = None
    """Cap on training epochs per retrain (None: early stopping only)."""
    batch_size: int = 256
    """Minibatch size per member."""
    holdout_ratio: float = 0.2
    """Fraction of the real data held out for early stopping and elite selection."""
    max_holdout: int = 5000
    """Cap on the number of holdout samples."""
    patience: int = 5
    """Stop after more than this many epochs with no member improving by `improvement`."""
    improvement: float = 0.01
    """Relative holdout-loss improvement that counts as progress."""
    use_elites: bool = True
    """Roll out with a random elite per sample; False uses every member."""


@dataclass(frozen=True)
class RolloutConfig:
    """Branched model rollouts."""

    batch_size: int = 100_000
    """Number of real states branched from at each retrain."""
    schedule: tuple[int, int, int, int] = (20, 100, 1, 1)
    """Rollout length schedule [min_epoch, max_epoch, min_k, max_k]."""
    train_freq: int = 250
    """Real steps between model retrains (and rollouts)."""
    retain_epochs: int = 1
    """Epochs of model rollouts kept in the model buffer."""
    from_initial_states: bool = False
    """Branch from environment reset states instead of real-buffer states (an ablation)."""


@dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic."""

    updates_per_step: int = 20
    """G: SAC updates per real env step."""
    batch_size: int = 256
    """Minibatch size."""
    lr: float = 3e-4
    """Adam learning rate for actor, critics and temperature."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 5e-3
    """Target network smoothing coefficient."""
    target_entropy: float | None = None
    """Entropy target for automatic temperature tuning (None: -action_dim)."""
    real_ratio: float = 0.05
    """Fraction of each minibatch drawn from real data (the rest from the model buffer)."""
    hidden: int = 256
    """Units per hidden layer of actor and critics."""
    layers: int = 2
    """Hidden layers of actor and critics."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    buffer_size: int = 1_000_000
    """Capacity of the real replay buffer."""


@dataclass(frozen=True)
class TrainConfig:
    """The run."""

    steps: int = 100_000
    """Total real environment steps (random exploration included)."""
    epoch_length: int = 1000
    """Real steps per epoch (evaluation, metrics and checkpoint at each epoch end)."""
    init_steps: int = 5000
    """Initial steps with a uniform random policy."""
    eval_episodes: int = 5
    """Deterministic evaluation episodes at each epoch end."""
    seed: int = 0
    """Seed for torch, numpy and the environments."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    threads: int | None = None
    """CPU threads for torch (None: all cores)."""
    cuda_graphs: bool = True
    """On CUDA, run each SAC update as a captured CUDA graph (checked against eager at capture; falls
    back to eager, with the reason shown, when capture is not possible). No effect on CPU."""
    checkpoint_every: int = 1
    """Epochs between checkpoints."""
    keep_checkpoints: int = 2
    """Periodic checkpoints kept on disk (plus the best-eval policy)."""


@dataclass(frozen=True)
class Config:
    """A complete, validated run configuration."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The task."""
    algo: Literal["mbpo", "sac"] = "mbpo"
    """mbpo, or sac (SAC on real data only, the same code path without a model)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The dynamics model."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Model rollouts."""
    sac: SACConfig = field(default_factory=SACConfig)
    """The agent."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run."""

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON data (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
