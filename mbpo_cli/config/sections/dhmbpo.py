"""Double Horizon MBPO's section and its dynamics model's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mbpo_cli.config.rules import DISCOUNT, NON_NEGATIVE, OPEN_UNIT, POSITIVE, POSITIVE_FINITE, AtMost, Within, checked

AT_MOST_ONE = AtMost(1, echo=False)
"""The upper bound of DHMBPO's rates."""


@dataclass(frozen=True)
class DynamicsConfig:
    """DHMBPO's dynamics model: an ensemble of Gaussian MLPs with layer normalization, dropout and a learned
    constant noise, trained on all real data with bootstrap weights and z-test early stopping.

    Defaults are the public code's (4kubo/erl_lib at 024b0b5: deep_ensemble.yaml, base_train.yaml, de_trainer.py).
    """

    members: int = field(default=8, metadata=checked(POSITIVE))
    """Ensemble members; each training-rollout batch is split into this many equal blocks, one member each."""
    hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer."""
    layers: int = field(default=3, metadata=checked(POSITIVE))
    """Hidden layers (SiLU)."""
    norm_eps: tuple[float, ...] = (1.0, 0.1, 0.01)
    """Layer-norm epsilon (no affine parameters) on the input of each layer after the first: the second and third
    hidden layers, then the output layer (`layers` values). The large values are deliberate: do not "fix" them."""
    dropout: tuple[float, ...] = (0.0075, 0.005, 0.0025)
    """Dropout rate after each hidden layer (`layers` values), during training only."""
    weight_decay: tuple[float, ...] = (2.5e-4, 5e-4, 7.5e-4, 1e-3)
    """AdamW's decoupled weight decay of each layer's weights and bias, hidden layers then output (`layers + 1`)."""
    noise_decay: float = field(default=1e-2, metadata=checked(NON_NEGATIVE))
    """AdamW's decoupled weight decay of the learned log noise scale (pulls the noise towards 1 in normalized
    units)."""
    lr: float = field(default=1e-3, metadata=checked(POSITIVE))
    """AdamW learning rate (a fresh optimizer at every retrain; the weights carry over)."""
    min_std: float = field(default=1e-3, metadata=checked(POSITIVE))
    """Floor of the noise scale in the loss's log term, and the std of the jitter added to the reward target."""
    bootstrap: Literal["exponential", "poisson"] = "exponential"
    """Per-member weights of each real transition in the loss, drawn once when it is first trained on: Exp(1)
    (the code's default) or Poisson(1)."""
    validation_fraction: float = field(default=0.2, metadata=checked(OPEN_UNIT))
    """Fraction of real transitions given a permanent validation label (never trained on)."""
    data_cap: int = field(default=100_000, metadata=checked(POSITIVE))
    """A retrain uses a random subset of at most this many real transitions."""
    batch_size: int = field(default=2048, metadata=checked(POSITIVE))
    """Minibatch size (every member sees the same minibatch, weighted by its bootstrap weights)."""
    batches_per_epoch: int = field(default=6, metadata=checked(POSITIVE))
    """Minibatches per epoch at most (fewer while there is little data); an epoch then checks the validation."""
    validation_batches: int = field(default=6, metadata=checked(POSITIVE))
    """Validation batches of `batch_size` scored per epoch at most (the first of one random order per retrain)."""
    improvement_p: float = 0.1
    """An epoch whose per-sample validation NLL beats the best snapshot's with a one-sided paired test's p-value
    under this becomes the new best snapshot."""
    keep_p: float = 0.5
    """An epoch with a p-value under this resets the patience."""
    patience_scale: float = field(default=50.0, metadata=checked(POSITIVE))
    """Patience in epochs: floor(patience_scale * ln(obs_dim + 1)) (Hopper 124, Walker2d and HalfCheetah 144,
    Ant 166, Humanoid 191); lower it to cut the retrain's cost."""
    max_epochs_ratio: float = field(default=5.0, metadata=checked(POSITIVE))
    """Training stops after floor(max_epochs_ratio * patience_scale * ln(obs_dim + 1)) epochs at most."""
    max_seconds: float | None = field(default=None, metadata=checked(POSITIVE_FINITE))
    """Cap on one retrain's wall time in seconds, checked after each epoch (None: no cap, the paper's). A capped
    run's numbers depend on the machine's speed: it is not reproducible."""


@dataclass(frozen=True)
class DHMBPOConfig:
    """Double Horizon MBPO (Kubo, Parmas and Ishii, TMLR 2025; `algo: dhmbpo`).

    The policy is frozen while it collects an iteration of real steps; at the iteration's end a learning burst
    refreshes the normalizers, retrains the model, starts fresh optimizers, fills a buffer with the states of long
    distribution rollouts (DR, no gradients), warms the critics up, then runs one joint update per real step of the
    iteration: each a short training rollout (TR) through the model from DR states, with gradients, whose
    value-expansion target trains the critics and whose return trains the actor through the model. The random
    exploration before the first burst is `train.init_steps` (the paper's 5 seed iterations: 5,000 steps), a
    multiple of `iteration_steps`.

    Defaults are the paper's shared settings, as in its public code (4kubo/erl_lib at 024b0b5: dhmbpo.yaml, svg.yaml,
    sac_new.yaml, sac.yaml).
    """

    iteration_steps: int = field(default=1000, metadata=checked(POSITIVE))
    """Real steps per iteration, a burst after each (the paper: the task's episode length)."""
    updates_per_step: float = field(default=1.0, metadata=checked(POSITIVE))
    """Joint updates per real step of an iteration (the update-to-data ratio; a burst runs the nearest whole
    number)."""
    first_model_factor: int = field(default=5, metadata=checked(POSITIVE))
    """The first burst's model patience and epoch cap are multiplied by this (the seed iterations)."""
    first_updates_factor: int = field(default=5, metadata=checked(POSITIVE))
    """The first burst runs this many times the joint updates (the seed iterations: 5,000)."""
    critic_warmup_updates: int | None = field(default=None, metadata=checked(NON_NEGATIVE))
    """Critic-only updates after each retrain, from one DR of max(batch_size * updates / distribution_horizon,
    batch_size) states (None: iteration_steps / 4, 250 updates from 3,200 states)."""
    distribution_horizon: int = field(default=20, metadata=checked(NON_NEGATIVE))
    """Steps of each distribution rollout (0: none; training rollouts then start from real states, SAC-SVG(H))."""
    distribution_every: int = field(default=20, metadata=checked(POSITIVE))
    """Joint updates between DRs (a DR before update 0, 20, 40, ...)."""
    distribution_starts: int = field(default=256, metadata=checked(POSITIVE))
    """Real start states of one DR round (a multiple of `model.members`)."""
    distribution_states: int = field(default=5120, metadata=checked(POSITIVE))
    """A DR repeats rounds until it has added at least this many states (normally one round of 256 x 21)."""
    distribution_buffer: int = field(default=51_200, metadata=checked(POSITIVE))
    """States the DR buffer keeps, first in first out (ten DRs); it is emptied at every retrain."""
    training_horizon: int = field(default=5, metadata=checked(NON_NEGATIVE))
    """H: model steps of each training rollout. 0: no training rollout through the model, MBPO's way of learning
    from it: the critics learn from one-step model transitions of the DR states (the target of H = 1, no gradient
    through the model) and the actor from the critics at its own action, as SAC inside MBPO does."""
    gamma: float = field(default=0.995, metadata=checked(DISCOUNT))
    """Discount."""
    batch_size: int = field(default=256, metadata=checked(POSITIVE))
    """Training-rollout start states per update (a multiple of `model.members`)."""
    lr: float = field(default=3e-4, metadata=checked(POSITIVE))
    """Adam learning rate of actor, critics and temperature (fresh optimizers at every burst)."""
    tau: float = field(default=5e-3, metadata=checked(POSITIVE, AT_MOST_ONE))
    """Target critics' smoothing coefficient."""
    init_alpha: float = field(default=0.1, metadata=checked(POSITIVE))
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """Entropy target of the temperature (None: -action_dim)."""
    actor_hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer of the actor."""
    actor_layers: int = field(default=3, metadata=checked(POSITIVE))
    """Hidden layers (SiLU) of the actor."""
    critic_members: int = field(default=5, metadata=checked(POSITIVE))
    """Critics in the ensemble (the actor's loss uses their mean)."""
    target_members: int = field(default=2, metadata=checked(POSITIVE))
    """Target critics drawn at random for each target, whose minimum is taken."""
    critic_hidden: int = field(default=256, metadata=checked(POSITIVE))
    """Units per hidden layer of each critic."""
    critic_layers: int = field(default=3, metadata=checked(POSITIVE))
    """Hidden layers (SiLU) of each critic."""
    critic_norm_eps: float = field(default=1e-5, metadata=checked(POSITIVE))
    """Layer-norm epsilon (no affine parameters) on the input of each critic layer after the first."""
    critic_dropout: float = field(default=1e-3, metadata=checked(DISCOUNT))
    """Dropout rate after each critic hidden layer (online critics only)."""
    bound_quantile: float = field(default=0.01, metadata=checked(Within(0, 0.5, "()")))
    """The critics predict `c + w z`, c and w the midpoint and half-width of bounds on Q: the `bound_quantile` and
    `1 - bound_quantile` quantiles of the training rollouts' entropy-regularized rewards, divided by 1 - gamma;
    targets are clipped to the bounds."""
    bound_rate: float = field(default=3e-4, metadata=checked(POSITIVE, AT_MOST_ONE))
    """Rate of the bounds' exponential moving average (the first update sets them)."""
    model: DynamicsConfig = field(default_factory=DynamicsConfig)
    """The dynamics model and its training."""

    def joint_updates(self, first: bool) -> int:
        """Joint updates of a burst (the first burst's, or any other's)."""
        return round(self.updates_per_step * self.iteration_steps * (self.first_updates_factor if first else 1))

    @property
    def warmup_updates(self) -> int:
        """Critic-only updates of a burst."""
        return self.iteration_steps // 4 if self.critic_warmup_updates is None else self.critic_warmup_updates

    @property
    def warmup_states(self) -> int:
        """States the warm-up DR adds at least (none without DRs or without a warm-up)."""
        if self.distribution_horizon <= 0 or self.warmup_updates == 0:
            return 0
        return max(self.batch_size * self.warmup_updates // self.distribution_horizon, self.batch_size)
