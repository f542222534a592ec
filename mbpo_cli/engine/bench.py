"""Component and end-to-end timings of the engine at a preset's shapes (`mbpo bench`).

Every timed region is warmed up, repeated, and bracketed by device synchronization; results are
medians (with min and max) in milliseconds.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.episodes import evaluate
from mbpo_cli.engine.events import StepEvent
from mbpo_cli.engine.loop import model_env, rollout_model, train, train_model
from mbpo_cli.engine.rollout import branched_rollout
from mbpo_cli.engine.state import PHASES, RunState, build_run, resolve_device
from mbpo_cli.models.ensemble import fit_ensemble, model_targets
from mbpo_cli.nn.batch import Batch


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one component, in milliseconds."""

    name: str
    samples: list[float]
    per_env_step: float
    """How many times the component runs per real env step in a full run (for the share column)."""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


_COMPONENTS = 7
"""The steps of `bench_components` as `progress` counts them: filling the buffer, then six timings."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> list[float]:
    """Wall time of `fn` in ms, `repeats` times after `warmup` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


FLOOR_SIZE = 256
"""The floor's matmul: one `torch.bmm` of two 1 x 256 x 256 fp32 matrices, the width of the agents' layers."""


@dataclass(frozen=True)
class Floor:
    """The machine's arithmetic floor: what one fp32 matmul of the networks' width reaches here."""

    gflops: float
    """Median GFLOP/s of the `FLOOR_SIZE` cubed `torch.bmm` (2 n^3 floating-point operations a call)."""
    threads: int
    """torch's CPU threads while it was measured."""
    device: str


def matmul_floor(device: torch.device, repeats: int = 200) -> Floor:
    """Measure the floor on `device`: a time on this machine compares with one on another as the floors compare."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(1, FLOOR_SIZE, FLOOR_SIZE, generator=generator, device=device)
    b = torch.randn(1, FLOOR_SIZE, FLOOR_SIZE, generator=generator, device=device)
    out = torch.empty(1, FLOOR_SIZE, FLOOR_SIZE, device=device)
    samples = measure(lambda: torch.bmm(a, b, out=out), device, repeats, warmup=20)
    seconds = statistics.median(samples) / 1000.0
    return Floor(2 * FLOOR_SIZE**3 / seconds / 1e9, torch.get_num_threads(), str(device))


def _fill(state: RunState, n: int) -> None:
    """Fill the real buffer with `n` random transitions near the task's start states."""
    spec, device = state.spec, state.device
    gen = torch.Generator(device=device).manual_seed(0)
    obs = torch.as_tensor(state.obs, device=device) + 0.1 * torch.randn(n, spec.obs_dim, generator=gen, device=device)
    act = torch.rand(n, spec.act_dim, generator=gen, device=device) * 2 - 1
    if spec.discrete:
        act = torch.nn.functional.one_hot(act.argmax(dim=-1), spec.act_dim).float()
    next_obs = obs + 0.01 * torch.randn(n, spec.obs_dim, generator=gen, device=device)
    state.real_buffer.add(Batch(obs, act, torch.randn(n, generator=gen, device=device), next_obs,
                                torch.zeros(n, device=device)))


Progress = Callable[[str, int, int], None]
"""Told (what is being done, how much of it is done, out of how much) as a benchmark goes."""


def _silent(_what: str, _done: int, _total: int) -> None:
    """The default progress: none."""


def bench_components(config: Config, samples: int, repeats: int = 20,
                     progress: Progress = _silent) -> tuple[list[Timing], str]:
    """Time the agent's update (`<agent>_update`), model minibatch, model retrain, rollout step, env step and
    evaluation; `progress` is told each component as it starts (done out of 8 components).

    Also says how the agent's update ran; when it (or the model's training step) ran as a CUDA graph, the
    eager version is timed beside it (`<agent>_update_eager`, `model_train_step_eager`: side-by-side ratios).
    """
    device = resolve_device(config.train.device)
    progress(f"filling a replay buffer with {samples:,} transitions", 0, _COMPONENTS)
    big = dataclasses.replace(config.agent, buffer_size=max(samples, config.agent.batch_size))
    cfg = dataclasses.replace(config, algo="mbpo", agent=big, train=dataclasses.replace(config.train, steps=samples))
    state = build_run(cfg, device)
    _fill(state, samples)
    assert state.model is not None and state.model_optimizer is not None
    gen = state.generators["sample"]
    timings: list[Timing] = []
    epoch = cfg.train.epoch_length
    per_step_rollouts = 1.0 / cfg.rollout.train_freq

    batch = state.real_buffer.sample(cfg.agent.batch_size, gen)
    name = f"{cfg.agent.name}_update"
    progress(f"timing {name}", 1, _COMPONENTS)
    eager = measure(lambda: state.agent.update(batch, gen), device, repeats * 5)
    mode = state.agent.use_cuda_graph(batch, gen) if cfg.train.cuda_graphs else "eager (train.cuda_graphs is off)"
    updates_per_step = float(cfg.agent.updates_per_step)
    if mode.startswith("eager"):
        timings.append(Timing(name, eager, updates_per_step))
    else:
        graphed = measure(lambda: state.agent.update(batch, gen), device, repeats * 5)
        timings += [Timing(name, graphed, updates_per_step), Timing(f"{name}_eager", eager, 0.0)]

    data = state.real_buffer.ordered()
    inputs = torch.cat([data.obs, data.act], dim=-1)
    targets = model_targets(data.obs, data.reward, data.next_obs)
    state.model.fit_normalizer(inputs)
    idx = torch.randint(samples, (cfg.model.ensemble_size, cfg.model.batch_size), generator=gen, device=device)
    x, y = state.model.normalize(inputs)[idx], targets[idx]

    model, optimizer = state.model, state.model_optimizer
    progress("timing model_train_step", 2, _COMPONENTS)
    eager = measure(lambda: model.train_step(optimizer, x, y), device, repeats * 5)
    if cfg.train.cuda_graphs:
        model.use_cuda_graph(optimizer, x, y)
    if model.graph is None:
        timings.append(Timing("model_train_step", eager, 0.0))
    else:
        graphed = measure(lambda: model.train_step(optimizer, x, y), device, repeats * 5)
        timings += [Timing("model_train_step", graphed, 0.0), Timing("model_train_step_eager", eager, 0.0)]
    progress(f"timing model_retrain (a full fit on {samples:,} transitions)", 3, _COMPONENTS)
    retrain = measure(lambda: fit_ensemble(model, optimizer, inputs, targets, state.generators["model"]), device, 1,
                      warmup=0)
    timings.append(Timing("model_retrain", retrain, per_step_rollouts))

    start = state.real_buffer.sample(cfg.rollout.batch_size, gen).obs
    sink = ReplayBuffer(cfg.rollout.batch_size, state.spec.obs_dim, state.spec.act_dim, device)
    rollout_env = model_env(state)

    def rollout_step() -> None:
        sink.ptr = sink.size = 0
        branched_rollout(rollout_env, state.agent, start, 1, sink, gen)

    progress("timing rollout_step", 4, _COMPONENTS)
    timings.append(Timing("rollout_step", measure(rollout_step, device, max(3, repeats // 4)), per_step_rollouts))

    env = state.env
    env.reset(seed=0)
    action = env.action_space.sample()

    def env_step() -> None:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    progress("timing env_step", 5, _COMPONENTS)
    timings.append(Timing("env_step", measure(env_step, device, repeats * 50), 1.0))
    progress("timing eval_episode", 6, _COMPONENTS)
    evaluation = measure(lambda: evaluate(state.agent, state.eval_env, state.spec, 1, 0, device), device,
                         max(3, repeats // 4), warmup=1)
    timings.append(Timing("eval_episode", evaluation, cfg.train.eval_episodes / epoch))
    progress("components timed", _COMPONENTS, _COMPONENTS)
    return timings, mode


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


def bench_end_to_end(config: Config, steps: int, progress: Progress = _silent,
                     start_at: int | None = None) -> EndToEnd:
    """Time `steps` training steps after `start_at` real steps (default: `train.init_steps`, the first epoch
    after exploration); `progress` is told the untimed steps, then the timed ones.

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
    state = build_run(explore_cfg)
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
                retrains.append(Retrain(state.model_trained_at, state.model_info[metric_keys.TIME_MODEL_FIT],
                                        int(state.model_info[metric_keys.MODEL_EPOCHS]), state.k))
        metrics = getattr(event, "metrics", None)
        if metrics is not None and state.env_step > begin:
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
    _sync(state.device)
    elapsed = time.perf_counter() - start
    if state.model_job is not None:
        state.model_job.cancel()
    return EndToEnd(begin, steps / elapsed, phases, retrains)
