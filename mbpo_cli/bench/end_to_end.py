"""A segment of training steps timed end to end (`mbpo bench`): steps per second, the seconds of each loop phase,
and each model retrain in the segment, from a chosen point of a run (by default the first epoch after exploration).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from mbpo_cli.bench.timing import Progress, silent, sync
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.events import StepEvent
from mbpo_cli.engine.loop import rollout_model, train, train_model
from mbpo_cli.engine.pack import build_pack
from mbpo_cli.engine.state import PHASES


@dataclass(frozen=True)
class Retrain:
    """One model retrain inside the end-to-end segment."""

    env_step: int
    seconds: float
    epochs: int
    rollout_length: int
    """The k of the branched rollouts that followed it."""


@dataclass(frozen=True)
class EndToEnd:
    """The end-to-end segment: its speed, where its time went, and each model retrain in it."""

    start: int
    """Real steps before the segment (the timed steps follow)."""
    steps_per_s: float
    """Steps of the pack per second (each a real step of every seed)."""
    seeds: int
    """Seeds in the pack (1: a lone run)."""
    phases: dict[str, float]
    """Seconds per loop phase (`PHASES`), summed over the segment."""
    retrains: list[Retrain]


def segment_start(config: Config, start_at: int | None) -> int:
    """The step an end-to-end segment starts at: `start_at`, or `train.init_steps` when None. ConfigError unless
    it is a due point of the model (`train.init_steps` plus a multiple of `rollout.train_freq`)."""
    init, freq = config.train.init_steps, config.rollout.train_freq
    begin = init if start_at is None else start_at
    if begin < init or (begin - init) % freq:
        raise ConfigError(f"--at must be a due point of the model: the exploration steps ({init:,}) plus a "
                          f"multiple of rollout.train_freq ({freq:,}), not {begin:,}")
    return begin


def bench_end_to_end(config: Config, steps: int, progress: Progress = silent,
                     start_at: int | None = None, seeds: int = 1) -> EndToEnd:
    """Time `steps` training steps of a pack of `seeds` seeds (from `train.seed` on; 1: a lone run) after `start_at`
    real steps (default: `train.init_steps`, the first epoch after exploration); `progress` is told the untimed
    steps, then the timed ones.

    Up to `start_at` (`train.init_steps` plus a multiple of `rollout.train_freq`) the loop explores with uniform
    random actions (real transitions) and trains nothing, except that a later start retrains the model and rolls
    it out once, untimed, `train_freq` steps before it, so the segment's first retrain starts from a model as old
    as a run's would be (the first epoch after exploration fits from scratch). The segment then runs as the run
    would from that step (its rollout length from the schedule's epoch).
    """
    begin = segment_start(config, start_at)
    init, freq = config.train.init_steps, config.rollout.train_freq
    run_cfg = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=begin + steps))
    explore_cfg = dataclasses.replace(run_cfg, train=dataclasses.replace(run_cfg.train, init_steps=begin))
    first = config.train.seed
    state = build_pack(explore_cfg, list(range(first, first + seeds)))
    phases: dict[str, float] = {}
    retrains: list[Retrain] = []
    warm_at = begin - freq if begin > init and state.uses_model else None

    def explore(event: object) -> None:
        if isinstance(event, StepEvent):
            progress("end to end: random exploration (not timed)", event.env_step, begin)

    def collect(event: object) -> None:
        if isinstance(event, StepEvent):
            progress("end to end: timed training steps", event.env_step - begin, steps)
            fresh = not retrains or retrains[-1].env_step != state.model_trained_at
            if state.model_trained_at is not None and state.model_trained_at >= begin and fresh:
                info = state.members[0].model_info
                retrains.append(Retrain(state.model_trained_at, info[metric_keys.TIME_MODEL_FIT],
                                        int(info[metric_keys.MODEL_EPOCHS]), state.k))
        metrics = getattr(event, "metrics", None)
        if metrics is not None and state.env_step > begin and getattr(event, "member", 0) == 0:
            for key, value in metrics.items():
                if key.startswith("time_") and key[5:] in PHASES:
                    phases[key[5:]] = phases.get(key[5:], 0.0) + value

    if warm_at is not None:
        train(state, explore, should_stop=lambda: state.env_step >= warm_at)
        progress(f"end to end: one untimed model retrain and rollout at step {warm_at:,}", warm_at, begin)
        state.config = run_cfg
        train_model(state)
        rollout_model(state)
        state.config = explore_cfg
    train(state, explore, should_stop=lambda: state.env_step >= begin)
    state.config = run_cfg
    start = time.perf_counter()
    train(state, collect)
    sync(state.device)
    elapsed = time.perf_counter() - start
    if state.model_job is not None:
        state.model_job.cancel()
    return EndToEnd(begin, steps / elapsed, seeds, phases, retrains)
