"""The one table of metric keys: every key a run records, the section it belongs to, and what it holds.

The registry stores each metric under its plain key (`eval_return`, `model_holdout_loss`, ...), as do the CSV
export and `mbpo runs metrics`. TensorBoard files (the live ones of `train.tensorboard` and those of
`mbpo runs export --format tensorboard`) put each under its section, `<namespace>/<key>` (:func:`tensorboard_tag`),
so that the evaluation return is not one card among forty. A key missing from the table goes to `other/`; a test
runs the engine and fails on any key it emits that the table lacks.

Code that writes or reads a key back uses the constants below, never the literal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Namespace(str, Enum):
    """The section of a metric (the first part of its TensorBoard tag)."""

    EVAL = "eval"
    TRAIN = "train"
    AGENT = "agent"
    MODEL = "model"
    ROLLOUT = "rollout"
    DIAG = "diag"
    TIME = "time"
    OTHER = "other"


@dataclass(frozen=True)
class Metric:
    """One metric key (or, for a family such as the open-loop errors, the prefix of its keys)."""

    key: str
    namespace: Namespace
    description: str


# -- Keys that code reads back (the registry, the progress display, the reports)
EVAL_RETURN = "eval_return"
EVAL_RETURN_STD = "eval_return_std"
EVAL_LENGTH = "eval_length"
WALL_SECONDS = "wall_seconds"
MODEL_HOLDOUT_LOSS = "model_holdout_loss"
MODEL_EPOCHS = "model_epochs"
TIME_MODEL_FIT = "time_model_fit"
DONE_HOLDOUT_RECALL = "done_holdout_recall"
ALPHA = "alpha"
EPSILON = "epsilon"
ROLLOUT_MEAN_LENGTH = "rollout_mean_length"
ROLLOUT_LENGTH_MEAN = "rollout_length_mean"
ROLLOUT_LENGTH_P10 = "rollout_length_p10"
ROLLOUT_LENGTH_P90 = "rollout_length_p90"
ROLLOUT_THRESHOLD = "rollout_threshold"
ROLLOUT_STOPPED_UNCERTAIN = "rollout_stopped_uncertain"
DIAG_MODEL_RETURN = "diag_model_return"
DIAG_MODEL_ERROR = "diag_model_error"
DIAG_REWARD_ERROR = "diag_reward_error"
DIAG_DISAGREEMENT = "diag_disagreement"
DIAG_OPEN_LOOP_PREFIX = "diag_open_loop_h"
"""The open-loop error's keys: `diag_open_loop_h1` .. `diag_open_loop_hH`."""
TIME_PREFIX = "time_"
"""Seconds per loop phase in an epoch: `time_env`, `time_model`, ... (see `mbpo_cli.engine.state.PHASES`)."""

_E, _T, _A, _M, _R, _D, _S = (Namespace.EVAL, Namespace.TRAIN, Namespace.AGENT, Namespace.MODEL, Namespace.ROLLOUT,
                              Namespace.DIAG, Namespace.TIME)

METRICS: tuple[Metric, ...] = (
    Metric(EVAL_RETURN, _E, "mean return of the epoch's evaluation episodes (deterministic policy)"),
    Metric(EVAL_RETURN_STD, _E, "standard deviation of the evaluation returns"),
    Metric(EVAL_LENGTH, _E, "mean length of the evaluation episodes"),
    Metric("epoch", _T, "completed epochs of real steps, exploration included"),
    Metric("training_epoch", _T, "completed epochs after exploration (the rollout schedule's epoch)"),
    Metric("train_return", _T, "mean return of the real episodes that ended in the epoch"),
    Metric("agent_updates", _T, "agent updates so far"),
    Metric("critic_loss", _A, "critic loss, mean over the epoch's updates (SAC, TD3, DDPG)"),
    Metric("actor_loss", _A, "actor loss, mean over the epoch's actor updates (SAC, TD3, DDPG)"),
    Metric("alpha_loss", _A, "SAC's temperature loss"),
    Metric("entropy", _A, "SAC's policy entropy estimate (-log pi of sampled actions)"),
    Metric(ALPHA, _A, "SAC's temperature at the epoch's end"),
    Metric("q", _A, "mean Q value of the sampled actions"),
    Metric("q_loss", _A, "DQN's TD loss"),
    Metric("q_mean", _A, "DHMBPO: mean of the critics' estimates at the training rollouts' start"),
    Metric("q_lower", _A, "DHMBPO: the critics' lower scaling bound at the epoch's end"),
    Metric("q_upper", _A, "DHMBPO: the critics' upper scaling bound at the epoch's end"),
    Metric(EPSILON, _A, "DQN's exploration rate at the epoch's end"),
    Metric("model_train_loss", _M, "the ensemble's training loss at the last retrain"),
    Metric(MODEL_HOLDOUT_LOSS, _M, "the elites' mean holdout loss at the last retrain"),
    Metric("model_best_epoch", _M, "DHMBPO: the retrain's epoch whose weights were kept (0: the starting weights)"),
    Metric("model_validation_nll", _M, "DHMBPO: the model's validation negative log-likelihood at the last retrain"),
    Metric("model_validation_samples", _M, "DHMBPO: validation transitions the last retrain scored"),
    Metric("model_elite_loss_min", _M, "the best elite's holdout loss"),
    Metric("model_elite_loss_max", _M, "the worst elite's holdout loss"),
    Metric(MODEL_EPOCHS, _M, "training epochs of the last retrain (early stopping)"),
    Metric("done_terminal", _M, "terminal transitions the learned termination was trained on"),
    Metric("done_epochs", _M, "training epochs of the learned termination"),
    Metric("done_holdout_accuracy", _M, "the learned termination's holdout accuracy"),
    Metric(DONE_HOLDOUT_RECALL, _M, "the learned termination's holdout recall of terminal transitions"),
    Metric("done_holdout_fpr", _M, "the learned termination's false-positive rate on held-out non-terminal "
           "transitions"),
    Metric("done_threshold", _M, "the learned termination's probability cut, chosen on the holdout"),
    Metric("rollout_k", _R, "branch length of the model rollouts (the schedule's k, or the adaptive maximum)"),
    Metric(ROLLOUT_MEAN_LENGTH, _R, "mean steps the last rollout's branches kept"),
    Metric("dr_buffer_states", _R, "DHMBPO: states in the distribution-rollout buffer after the last burst"),
    Metric("model_buffer_size", _R, "model transitions in the model buffer"),
    Metric(ROLLOUT_LENGTH_MEAN, _R, "adaptive rollouts: mean realized branch length"),
    Metric(ROLLOUT_LENGTH_P10, _R, "adaptive rollouts: 10th percentile of the branch lengths"),
    Metric(ROLLOUT_LENGTH_P90, _R, "adaptive rollouts: 90th percentile of the branch lengths"),
    Metric(ROLLOUT_THRESHOLD, _R, "adaptive rollouts: the disagreement above which a branch stops"),
    Metric(ROLLOUT_STOPPED_UNCERTAIN, _R, "adaptive rollouts: fraction of branches the threshold stopped"),
    Metric("rollout_transitions", _R, "adaptive rollouts: transitions written to the model buffer"),
    Metric(DIAG_MODEL_ERROR, _D, "one-step error of the model on the newest real transitions"),
    Metric(DIAG_REWARD_ERROR, _D, "one-step reward error on the newest real transitions"),
    Metric(DIAG_DISAGREEMENT, _D, "the members' disagreement on the newest real transitions"),
    Metric(DIAG_MODEL_RETURN, _D, "the policy's return inside the model, from the evaluation's initial states"),
    Metric(WALL_SECONDS, _S, "training wall time of the run so far, across sessions"),
    Metric(TIME_MODEL_FIT, _S, "seconds of the last retrain"),
    Metric("time_env", _S, "seconds of real env steps in the epoch"),
    Metric("time_model", _S, "seconds of model retraining in the epoch (MBPO only)"),
    Metric("time_rollout", _S, "seconds of model rollouts in the epoch (MBPO only)"),
    Metric("time_agent", _S, "seconds of agent updates in the epoch"),
    Metric("time_eval", _S, "seconds of the epoch's evaluation"),
    Metric("time_diag", _S, "seconds of the epoch's model diagnostics (MBPO only)"),
)
"""Every metric key the engine and the training session record."""

FAMILIES: tuple[Metric, ...] = (
    Metric(DIAG_OPEN_LOOP_PREFIX, _D, "open-loop error after h model steps (the key ends in h)"),
)
"""Families of keys, by prefix."""

_BY_KEY = {m.key: m for m in METRICS}


def metric(key: str) -> Metric | None:
    """The table's entry for ``key`` (a family's for a key of that family), or None for an unknown key."""
    found = _BY_KEY.get(key)
    if found is not None:
        return found
    return next((m for m in FAMILIES if key.startswith(m.key) and key[len(m.key):].isdigit()), None)


def tensorboard_tag(key: str) -> str:
    """``key``'s TensorBoard tag: ``<namespace>/<key>`` (e.g. ``eval/eval_return``), ``other/<key>`` when the table
    lacks it."""
    found = metric(key)
    return f"{(found.namespace if found is not None else Namespace.OTHER).value}/{key}"
