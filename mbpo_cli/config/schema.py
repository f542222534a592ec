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


TERMINATION_MODES = ("known", "learned", "never", "auto")
"""`env.termination` values besides a task name and `module:function`."""

AGENTS = ("sac", "td3", "ddpg", "dqn")
"""The base agents (`agent.name`)."""


@dataclass(frozen=True)
class WrapperConfig:
    """One gymnasium wrapper around the task (an item of `env.wrappers`)."""

    name: str = ""
    """A wrapper of `gymnasium.wrappers` by its class name (`RescaleAction`, `TimeLimit`, `FilterObservation`, ...) or
    `module:Class` for another one (the working directory importable, as for custom functions). It must keep no
    state between steps that changes what the task returns: checkpoints restore the task, not a wrapper's own
    state (gymnasium's stateful wrappers, such as NormalizeObservation, are refused)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the wrapper's constructor (after the environment), e.g. `{max_episode_steps: 500}`; a list
    is passed as a tuple (`{shape: [2, 2]}`)."""


@dataclass(frozen=True)
class EnvConfig:
    """The task."""

    id: str = "InvertedPendulum-v5"
    """Gymnasium environment id, `module:EnvId` (the module registers it) or a namespaced id such as
    `dm_control/cartpole-swingup-v0` (the namespace's package is imported). Box actions for sac/td3/ddpg, Discrete
    for dqn; the observation a flat Box, or a Dict or Tuple, which is flattened (gymnasium's `FlattenObservation`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make`, e.g. v5 observation options or `max_episode_steps`."""
    wrappers: tuple[WrapperConfig, ...] = ()
    """Gymnasium wrappers applied in order around the task (training, evaluation, export, diagnostics and resume
    alike): a list of `{name: ..., kwargs: {...}}`. A Dict or Tuple observation left by them is then flattened."""
    termination: str = "known"
    """How model rollouts decide that an episode ends: known (the paper's function for this task; an error for
    a task without one), learned (a classifier trained with the model on real transitions, see `done_model`),
    never, a task name (hopper, ...), `module:function` (vectorized: next observations `N x D` -> bool `N`), or
    auto (known when the task has a known function, else never: what runs recorded before `known` existed use)."""
    reward: str = "model"
    """Where model rollouts take their rewards: model (predicted by the ensemble, as in the paper) or
    `module:function` of `(obs N x D, act N x A, next_obs N x D)` -> `N`."""


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
    max_train_seconds: float | None = None
    """Cap on one retrain's wall time in seconds, checked after each epoch (the official code's `max_model_t`;
    None: no cap, its default). A capped run's numbers depend on the machine's speed: it is not reproducible."""
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
class DoneModelConfig:
    """The learned termination classifier (used when `env.termination` is learned).

    An MLP on the next observation trained on real transitions with a class-weighted binary cross-entropy
    (weights from the done/not-done frequencies, since terminations are rare), with early stopping on a
    stratified holdout split; its holdout accuracy, recall on terminal transitions, false-positive rate and
    threshold are logged per retrain.
    """

    hidden: int = 200
    """Units per hidden layer."""
    layers: int = 2
    """Hidden layers (SiLU)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 256
    """Minibatch size."""
    holdout_ratio: float = 0.2
    """Fraction of the terminal and of the other transitions held out for early stopping and the metrics."""
    patience: int = 5
    """Stop after more than this many epochs without a 1% better holdout loss."""
    max_epochs: int = 100
    """Cap on training epochs per retrain."""
    threshold: float | None = None
    """A next state terminates when the predicted probability exceeds this; None: the threshold that maximizes the F2
    score on each retrain's holdout, never below 0.5 (far fewer false terminations than 0.5 under the class
    weighting, see `mbpo_cli.models.done`; 0.5 gives the numbers of versions before the choice)."""


@dataclass(frozen=True)
class RolloutConfig:
    """Branched model rollouts."""

    batch_size: int = 100_000
    """Number of real states branched from at each retrain."""
    schedule: tuple[int, int, int, int] = (20, 100, 1, 1)
    """Rollout length schedule [min_epoch, max_epoch, min_k, max_k]. Its epoch counts training epochs as the
    official code does, from the end of random exploration: (env_step - train.init_steps) // epoch_length, so
    a hopper run (init_steps 5,000) is at epoch 45 at env step 50,000."""
    train_freq: int = 250
    """Real steps between model retrains (and rollouts)."""
    retain_epochs: int = 1
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
    adaptive_scale: float = 1.0
    """The adaptive horizon's one number: the threshold in units of the first step's 95th-percentile
    disagreement (larger trusts the model further; 1.0 continues a branch while its disagreement is no worse than
    95% of the real states it could start from)."""
    adaptive_max_length: int = 10
    """The longest branch with `adaptive` (10, as MACURA's `max_rollout_length` in its published configurations)."""


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Model diagnostics recorded at each epoch end of an MBPO run (after the evaluation; `mbpo diagnose`)."""

    enabled: bool = True
    """Record them (read-only: they draw from their own random stream and change no number of the run)."""
    horizon: int = 10
    """H: open-loop error is measured at rollout steps 1..H."""
    samples: int = 256
    """Real action sequences replayed through the model for the open-loop error (from real start states)."""
    imagined_episodes: int = 5
    """Episodes of the policy inside the model (its model return), from the evaluation's initial states."""
    imagined_cap: int = 1000
    """Longest imagined episode (the task's time limit when shorter)."""


@dataclass(frozen=True)
class AgentConfig:
    """The base agent and how the loop feeds it (every agent)."""

    name: Literal["sac", "td3", "ddpg", "dqn"] = "sac"
    """sac, td3 or ddpg (continuous Box actions), or dqn (Discrete actions); each has its own section."""
    updates_per_step: int = 20
    """G: agent updates per real env step."""
    batch_size: int = 256
    """Minibatch size."""
    real_ratio: float = 0.05
    """Fraction of each minibatch drawn from real data (the rest from the model buffer)."""
    gamma: float = 0.99
    """Discount."""
    buffer_size: int = 1_000_000
    """Capacity of the real replay buffer."""


@dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (Haarnoja et al. 2018): twin critics, a tanh-Gaussian actor, a learned temperature."""

    lr: float = 3e-4
    """Adam learning rate for actor, critics and temperature."""
    tau: float = 5e-3
    """Target network smoothing coefficient."""
    target_entropy: float | None = None
    """Entropy target for automatic temperature tuning (None: -action_dim)."""
    hidden: int = 256
    """Units per hidden layer of actor and critics."""
    layers: int = 2
    """Hidden layers of actor and critics."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""


@dataclass(frozen=True)
class TD3Config:
    """TD3 (Fujimoto et al. 2018): twin critics, target policy smoothing, delayed actor updates."""

    lr: float = 3e-4
    """Adam learning rate for actor and critics."""
    tau: float = 5e-3
    """Target network smoothing coefficient (targets move on actor updates)."""
    hidden: int = 256
    """Units per hidden layer of actor and critics."""
    layers: int = 2
    """Hidden layers of actor and critics."""
    policy_noise: float = 0.2
    """Std of the Gaussian noise added to target actions (actions in [-1, 1])."""
    noise_clip: float = 0.5
    """Clip of the target action noise."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise on the actor's action when acting to explore (real steps and rollouts)."""


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG (Lillicrap et al. 2016): one critic and a deterministic actor, both with soft target copies."""

    lr: float = 3e-4
    """Adam learning rate for actor and critic."""
    tau: float = 5e-3
    """Target network smoothing coefficient."""
    hidden: int = 256
    """Units per hidden layer of actor and critic."""
    layers: int = 2
    """Hidden layers of actor and critic."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise on the actor's action when acting to explore (real steps and rollouts)."""


@dataclass(frozen=True)
class DQNConfig:
    """Double DQN (van Hasselt et al. 2016) with a soft-updated target network and an epsilon-greedy policy."""

    lr: float = 1e-3
    """Adam learning rate."""
    tau: float = 5e-3
    """Target network smoothing coefficient (1.0 with a large G is a hard copy every update)."""
    hidden: int = 256
    """Units per hidden layer."""
    layers: int = 2
    """Hidden layers (ReLU)."""
    epsilon_start: float = 1.0
    """Exploration rate at env step 0."""
    epsilon_end: float = 0.05
    """Exploration rate once the decay is over (also in model rollouts)."""
    epsilon_decay_steps: int = 2500
    """Real env steps over which epsilon falls linearly from start to end."""
    max_grad_norm: float = 10.0
    """Gradient norm clip of each update."""


@dataclass(frozen=True)
class DynamicsConfig:
    """DHMBPO's dynamics model: an ensemble of Gaussian MLPs with layer normalization, dropout and a learned
    constant noise, trained on all real data with bootstrap weights and z-test early stopping.

    Defaults are the public code's (4kubo/erl_lib at 024b0b5: deep_ensemble.yaml, base_train.yaml, de_trainer.py).
    """

    members: int = 8
    """Ensemble members; each training-rollout batch is split into this many equal blocks, one member each."""
    hidden: int = 256
    """Units per hidden layer."""
    layers: int = 3
    """Hidden layers (SiLU)."""
    norm_eps: tuple[float, ...] = (1.0, 0.1, 0.01)
    """Layer-norm epsilon (no affine parameters) on the input of each layer after the first: the second and third
    hidden layers, then the output layer (`layers` values). The large values are deliberate: do not "fix" them."""
    dropout: tuple[float, ...] = (0.0075, 0.005, 0.0025)
    """Dropout rate after each hidden layer (`layers` values), during training only."""
    weight_decay: tuple[float, ...] = (2.5e-4, 5e-4, 7.5e-4, 1e-3)
    """AdamW's decoupled weight decay of each layer's weights and bias, hidden layers then output (`layers + 1`)."""
    noise_decay: float = 1e-2
    """AdamW's decoupled weight decay of the learned log noise scale (pulls the noise towards 1 in normalized
    units)."""
    lr: float = 1e-3
    """AdamW learning rate (a fresh optimizer at every retrain; the weights carry over)."""
    min_std: float = 1e-3
    """Floor of the noise scale in the loss's log term, and the std of the jitter added to the reward target."""
    bootstrap: Literal["exponential", "poisson"] = "exponential"
    """Per-member weights of each real transition in the loss, drawn once when it is first trained on: Exp(1)
    (the code's default) or Poisson(1)."""
    validation_fraction: float = 0.2
    """Fraction of real transitions given a permanent validation label (never trained on)."""
    data_cap: int = 100_000
    """A retrain uses a random subset of at most this many real transitions."""
    batch_size: int = 2048
    """Minibatch size (every member sees the same minibatch, weighted by its bootstrap weights)."""
    batches_per_epoch: int = 6
    """Minibatches per epoch at most (fewer while there is little data); an epoch then checks the validation."""
    validation_batches: int = 6
    """Validation batches of `batch_size` scored per epoch at most (the first of one random order per retrain)."""
    improvement_p: float = 0.1
    """An epoch whose per-sample validation NLL beats the best snapshot's with a one-sided paired test's p-value
    under this becomes the new best snapshot."""
    keep_p: float = 0.5
    """An epoch with a p-value under this resets the patience."""
    patience_scale: float = 50.0
    """Patience in epochs: floor(patience_scale * ln(obs_dim + 1)) (Hopper 124, Walker2d and HalfCheetah 144,
    Ant 166, Humanoid 191); lower it to cut the retrain's cost."""
    max_epochs_ratio: float = 5.0
    """Training stops after floor(max_epochs_ratio * patience_scale * ln(obs_dim + 1)) epochs at most."""
    max_seconds: float | None = None
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

    iteration_steps: int = 1000
    """Real steps per iteration, a burst after each (the paper: the task's episode length)."""
    updates_per_step: float = 1.0
    """Joint updates per real step of an iteration (the update-to-data ratio; a burst runs the nearest whole
    number)."""
    first_model_factor: int = 5
    """The first burst's model patience and epoch cap are multiplied by this (the seed iterations)."""
    first_updates_factor: int = 5
    """The first burst runs this many times the joint updates (the seed iterations: 5,000)."""
    critic_warmup_updates: int | None = None
    """Critic-only updates after each retrain, from one DR of max(batch_size * updates / distribution_horizon,
    batch_size) states (None: iteration_steps / 4, 250 updates from 3,200 states)."""
    distribution_horizon: int = 20
    """Steps of each distribution rollout (0: none; training rollouts then start from real states, SAC-SVG(H))."""
    distribution_every: int = 20
    """Joint updates between DRs (a DR before update 0, 20, 40, ...)."""
    distribution_starts: int = 256
    """Real start states of one DR round (a multiple of `model.members`)."""
    distribution_states: int = 5120
    """A DR repeats rounds until it has added at least this many states (normally one round of 256 x 21)."""
    distribution_buffer: int = 51_200
    """States the DR buffer keeps, first in first out (ten DRs); it is emptied at every retrain."""
    training_horizon: int = 5
    """H: model steps of each training rollout. 0: no training rollout through the model, MBPO's way of learning
    from it: the critics learn from one-step model transitions of the DR states (the target of H = 1, no gradient
    through the model) and the actor from the critics at its own action, as SAC inside MBPO does."""
    gamma: float = 0.995
    """Discount."""
    batch_size: int = 256
    """Training-rollout start states per update (a multiple of `model.members`)."""
    lr: float = 3e-4
    """Adam learning rate of actor, critics and temperature (fresh optimizers at every burst)."""
    tau: float = 5e-3
    """Target critics' smoothing coefficient."""
    init_alpha: float = 0.1
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """Entropy target of the temperature (None: -action_dim)."""
    actor_hidden: int = 256
    """Units per hidden layer of the actor."""
    actor_layers: int = 3
    """Hidden layers (SiLU) of the actor."""
    critic_members: int = 5
    """Critics in the ensemble (the actor's loss uses their mean)."""
    target_members: int = 2
    """Target critics drawn at random for each target, whose minimum is taken."""
    critic_hidden: int = 256
    """Units per hidden layer of each critic."""
    critic_layers: int = 3
    """Hidden layers (SiLU) of each critic."""
    critic_norm_eps: float = 1e-5
    """Layer-norm epsilon (no affine parameters) on the input of each critic layer after the first."""
    critic_dropout: float = 1e-3
    """Dropout rate after each critic hidden layer (online critics only)."""
    bound_quantile: float = 0.01
    """The critics predict `c + w z`, c and w the midpoint and half-width of bounds on Q: the `bound_quantile` and
    `1 - bound_quantile` quantiles of the training rollouts' entropy-regularized rewards, divided by 1 - gamma;
    targets are clipped to the bounds."""
    bound_rate: float = 3e-4
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
    """Seed for torch, numpy and the environments (0 to 2**31 - 1)."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    threads: int | None = None
    """CPU threads for torch (None: all cores; at most 1024)."""
    pipeline: bool = False
    """Retrain the model in a worker thread while the agent keeps training (MBPO runs): the rollouts at each
    point where the model is due come from the model trained at the previous such point (one `train_freq`
    staler than the sequential loop), and the threads are split between the two activities. Seeded runs stay
    exactly reproducible."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Matmul precision of float32 tensors: fp32, or bf16 (`torch.set_float32_matmul_precision("medium")`: bf16
    matmuls through oneDNN on a CPU with bf16 instructions, TF32 on CUDA). Faster, and changes results."""
    cuda_graphs: bool = True
    """On CUDA, run each agent update as a captured CUDA graph (checked against eager at capture; falls
    back to eager, with the reason shown, when capture is not possible). No effect on CPU."""
    checkpoint_every: int = 1
    """Epochs between checkpoints."""
    keep_checkpoints: int = 2
    """Periodic checkpoints kept on disk (plus the best-eval policy)."""
    tensorboard: bool = False
    """Also write each epoch's metrics as TensorBoard event files under `runs/<run-id>/tensorboard/` while training
    (needs the optional `tensorboard` package: `pip install 'mbpo-cli[tensorboard]'`). `mbpo runs export` writes
    them for any recorded run afterwards."""


@dataclass(frozen=True)
class Config:
    """A complete, validated run configuration."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The task."""
    algo: Literal["mbpo", "model_free", "dhmbpo"] = "mbpo"
    """mbpo, model_free (the base agent on real data only, the same code path without a model), or dhmbpo (Double
    Horizon MBPO: its own model, actor and critics, see `dhmbpo`)."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """The base agent and its update ratio."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The dynamics model."""
    done_model: DoneModelConfig = field(default_factory=DoneModelConfig)
    """The learned termination classifier (env.termination: learned)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Model rollouts."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC's hyperparameters (agent.name: sac)."""
    td3: TD3Config = field(default_factory=TD3Config)
    """TD3's hyperparameters (agent.name: td3)."""
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)
    """DDPG's hyperparameters (agent.name: ddpg)."""
    dqn: DQNConfig = field(default_factory=DQNConfig)
    """DQN's hyperparameters (agent.name: dqn)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run."""
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    """Model diagnostics (MBPO runs)."""
    dhmbpo: DHMBPOConfig = field(default_factory=DHMBPOConfig)
    """Double Horizon MBPO's settings (algo: dhmbpo)."""

    @property
    def uses_model(self) -> bool:
        """True for the model-based algorithms (mbpo, dhmbpo), False for the base agent alone."""
        return self.algo in ("mbpo", "dhmbpo")

    @property
    def label(self) -> str:
        """How runs are named and grouped: mbpo (with SAC, the paper's), mbpo-<agent>, dhmbpo, or the agent alone."""
        if self.algo == "model_free":
            return self.agent.name
        if self.algo == "dhmbpo":
            return "dhmbpo"
        return "mbpo" if self.agent.name == "sac" else f"mbpo-{self.agent.name}"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON data (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
