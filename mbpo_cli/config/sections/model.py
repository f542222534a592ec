"""The sections of MBPO's model: the dynamics ensemble, the learned termination, the rollouts, the diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mbpo_cli.config.rules import NON_NEGATIVE, OPEN_UNIT, POSITIVE, POSITIVE_FINITE, AllAtLeast, Holds, checked

SCHEDULE = Holds(lambda s: 0 <= s[0] <= s[1] and s[2] >= 1 and s[3] >= 1,
                 "need 0 <= min_epoch <= max_epoch and k >= 1")
"""The rule of `rollout.schedule` [min_epoch, max_epoch, min_k, max_k]."""


@dataclass(frozen=True)
class ModelConfig:
    """The probabilistic ensemble dynamics model."""

    ensemble_size: int = field(default=7, metadata=checked(POSITIVE))
    """Number of ensemble members E."""
    elites: int = field(default=5, metadata=checked(POSITIVE))
    """Members with the lowest holdout loss used for rollouts (at most `ensemble_size`)."""
    hidden: int = field(default=200, metadata=checked(POSITIVE))
    """Units per hidden layer."""
    layers: int = field(default=4, metadata=checked(POSITIVE))
    """Number of hidden layers (SiLU)."""
    lr: float = field(default=1e-3, metadata=checked(POSITIVE))
    """Adam learning rate."""
    weight_decay: tuple[float, ...] = field(default=(2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4),
                                            metadata=checked(AllAtLeast(0)))
    """L2 coefficient per layer, hidden layers then output layer (layers + 1 values)."""
    deterministic: bool = False
    """Train with MSE and predict the mean instead of a Gaussian."""
    max_epochs: int | None = field(default=None, metadata=checked(POSITIVE))
    """Cap on training epochs per retrain (None: early stopping only)."""
    max_train_seconds: float | None = field(default=None, metadata=checked(POSITIVE_FINITE))
    """Cap on one retrain's wall time in seconds, checked after each epoch (the official code's `max_model_t`;
    None: no cap, its default). A capped run's numbers depend on the machine's speed: it is not reproducible."""
    batch_size: int = field(default=256, metadata=checked(POSITIVE))
    """Minibatch size per member."""
    holdout_ratio: float = field(default=0.2, metadata=checked(OPEN_UNIT))
    """Fraction of the real data held out for early stopping and elite selection."""
    max_holdout: int = field(default=5000, metadata=checked(POSITIVE))
    """Cap on the number of holdout samples."""
    patience: int = 5
    """Stop after more than this many epochs with no member improving by `improvement`."""
    improvement: float = 0.01
    """Relative holdout-loss improvement that counts as progress."""
    use_elites: bool = True
    """Roll out with a random elite per sample; False uses every member."""


@dataclass(frozen=True)
class DoneModelConfig:
    """The learned termination classifier (used when `env.termination` is learned).

    An MLP on the next observation trained on real transitions with a class-weighted binary cross-entropy
    (weights from the done/not-done frequencies, since terminations are rare), with early stopping on a
    stratified holdout split; its holdout accuracy, recall on terminal transitions, false-positive rate and
    threshold are logged per retrain.
    """

    hidden: int = field(default=200, metadata=checked(POSITIVE))
    """Units per hidden layer."""
    layers: int = field(default=2, metadata=checked(POSITIVE))
    """Hidden layers (SiLU)."""
    lr: float = field(default=1e-3, metadata=checked(POSITIVE))
    """Adam learning rate."""
    batch_size: int = field(default=256, metadata=checked(POSITIVE))
    """Minibatch size."""
    holdout_ratio: float = field(default=0.2, metadata=checked(OPEN_UNIT))
    """Fraction of the terminal and of the other transitions held out for early stopping and the metrics."""
    patience: int = field(default=5, metadata=checked(NON_NEGATIVE))
    """Stop after more than this many epochs without a 1% better holdout loss."""
    max_epochs: int = field(default=100, metadata=checked(POSITIVE))
    """Cap on training epochs per retrain."""
    threshold: float | None = field(default=None, metadata=checked(OPEN_UNIT))
    """A next state terminates when the predicted probability exceeds this; None: the threshold that maximizes the F2
    score on each retrain's holdout, never below 0.5 (far fewer false terminations than 0.5 under the class
    weighting, see `mbpo_cli.models.termination.learned`; 0.5 gives the numbers of versions before the choice)."""


@dataclass(frozen=True)
class RolloutConfig:
    """Branched model rollouts."""

    batch_size: int = field(default=100_000, metadata=checked(POSITIVE))
    """Number of real states branched from at each retrain."""
    schedule: tuple[int, int, int, int] = field(default=(20, 100, 1, 1), metadata=checked(SCHEDULE))
    """Rollout length schedule [min_epoch, max_epoch, min_k, max_k]. Its epoch counts training epochs as the
    official code does, from the end of random exploration: (env_step - train.init_steps) // epoch_length, so
    a hopper run (init_steps 5,000) is at epoch 45 at env step 50,000."""
    train_freq: int = field(default=250, metadata=checked(POSITIVE))
    """Real steps between model retrains (and rollouts)."""
    retain_epochs: int = field(default=1, metadata=checked(POSITIVE))
    """Epochs of model rollouts kept in the model buffer."""
    from_initial_states: bool = False
    """Branch from environment reset states instead of real-buffer states (an ablation)."""
    when: Literal["step", "episode"] = "step"
    """step: retrain and roll out every `train_freq` real steps (the paper); episode: at the start of each
    real episode (as MATLAB's MBPO agent), the model buffer keeping as many generations as step mode would."""
    adaptive: bool = False
    """Let the model's own uncertainty set each branch's length instead of `schedule` (the idea of MACURA,
    Frauenknecht et al. 2024, in our own form): a branch continues while the elites' disagreement at its state and
    action (every member's with `model.use_elites: false`; `disagreement`: the mean KL divergence from each one's
    Gaussian next-state prediction to their normalized geometric mean, a geometric Jensen-Shannon divergence) stays
    at or under a threshold, for at most `adaptive_max_length` steps; the step that crosses it is not kept. The
    threshold is `adaptive_scale` times the 95th percentile of the disagreement at the first step of the same
    rollout (from real states), so it follows the model as it improves. The model buffer keeps exactly the
    transitions of the last `retain_epochs` epochs of rollouts, whatever their lengths. MACURA's own rule differs:
    its measure averages a two-member divergence (from the pair's geometric mean to each member) over every pair
    of the whole ensemble, over the reward as well as the next state, and its threshold is a tuned multiple of a
    tuned percentile of the first step's measure, averaged over past rollouts."""
    adaptive_scale: float = field(default=1.0, metadata=checked(POSITIVE_FINITE))
    """The adaptive horizon's one number: the threshold in units of the first step's 95th-percentile
    disagreement (larger trusts the model further; 1.0 continues a branch while its disagreement is no worse than
    95% of the real states it could start from)."""
    adaptive_max_length: int = field(default=10, metadata=checked(POSITIVE))
    """The longest branch with `adaptive` (10, as MACURA's `max_rollout_length` in its published configurations)."""


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Model diagnostics recorded at each epoch end of an MBPO run (after the evaluation; `mbpo diagnose`)."""

    enabled: bool = True
    """Record them (read-only: they draw from their own random stream and change no number of the run)."""
    horizon: int = field(default=10, metadata=checked(POSITIVE))
    """H: open-loop error is measured at rollout steps 1..H."""
    samples: int = field(default=256, metadata=checked(POSITIVE))
    """Real action sequences replayed through the model for the open-loop error (from real start states)."""
    imagined_episodes: int = field(default=5, metadata=checked(POSITIVE))
    """Episodes of the policy inside the model (its model return), from the evaluation's initial states."""
    imagined_cap: int = field(default=1000, metadata=checked(POSITIVE))
    """Longest imagined episode (the task's time limit when shorter)."""
