"""Component timings of the engine at a preset's shapes (`mbpo bench`): the agent's update, the model's training
step and a full retrain, one rollout step, one env step and one evaluation episode, on a run whose real buffer is
filled with random transitions near the task's start states."""

from __future__ import annotations

import dataclasses

import torch

from mbpo_cli.agents.base import GraphedAgent, pack_agents
from mbpo_cli.bench.timing import Progress, Timing, measure, silent
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.episodes import evaluate
from mbpo_cli.engine.loop import model_env
from mbpo_cli.engine.rollout import branched_rollout
from mbpo_cli.engine.state import RunState, build_run, resolve_device
from mbpo_cli.models.ensemble import GaussianEnsemble, fit_ensemble, make_model_optimizer, model_targets
from mbpo_cli.nn.batch import Batch

COMPONENTS = 7
"""The steps of `bench_components` as `progress` counts them: filling the buffer, then six timings."""


def bench_components(config: Config, samples: int, repeats: int = 20,
                     progress: Progress = silent, seeds: int = 1) -> tuple[list[Timing], str]:
    """Time the agent's update (`<agent>_update`), model minibatch, model retrain, rollout step, env step and
    evaluation; `progress` is told each component as it starts (done out of `COMPONENTS`).

    With `seeds` > 1 the update, the model minibatch and the retrain are a pack's (all its seeds at once: per seed,
    divide by `seeds`); the rollout step, the env step and the evaluation are one seed's (a pack runs them once per
    seed). Also says how the agent's update ran; when it (or the model's training step) ran as a CUDA graph, the
    eager version is timed beside it (`<agent>_update_eager`, `model_train_step_eager`: side-by-side ratios).
    """
    progress(f"filling a replay buffer with {samples:,} transitions", 0, COMPONENTS)
    state = filled_run(config, samples)
    pack = packed_copies(state, seeds)
    timings, mode = time_agent_update(pack, repeats, progress)
    timings += time_model_training(pack, samples, repeats, progress)
    timings.append(time_rollout_step(state, repeats, progress))
    timings += time_env(state, repeats, progress)
    progress("components timed", COMPONENTS, COMPONENTS)
    return timings, mode


def packed_copies(state: RunState, seeds: int) -> RunState:
    """`state` with its agent and model as a pack of `seeds` copies of themselves (`state` itself for one seed)."""
    if seeds == 1:
        return state
    assert isinstance(state.agent, GraphedAgent) and state.model is not None
    model = GaussianEnsemble.pack([state.model] * seeds)
    return dataclasses.replace(state, members=[state.lone] * seeds, agent=pack_agents([state.agent] * seeds),
                               model=model, model_optimizer=make_model_optimizer(model))


def filled_run(config: Config, samples: int) -> RunState:
    """An MBPO run of `config`'s shapes whose real buffer holds `samples` random transitions near the task's start
    states."""
    big = dataclasses.replace(config.agent, buffer_size=max(samples, config.agent.batch_size))
    cfg = dataclasses.replace(config, algo="mbpo", agent=big, train=dataclasses.replace(config.train, steps=samples))
    state = build_run(cfg, resolve_device(config.train.device))
    spec, device = state.spec, state.device
    gen = torch.Generator(device=device).manual_seed(0)
    obs = torch.as_tensor(state.lone.obs, device=device) + 0.1 * torch.randn(samples, spec.obs_dim, generator=gen,
                                                                        device=device)
    act = torch.rand(samples, spec.act_dim, generator=gen, device=device) * 2 - 1
    if spec.discrete:
        act = torch.nn.functional.one_hot(act.argmax(dim=-1), spec.act_dim).float()
    next_obs = obs + 0.01 * torch.randn(samples, spec.obs_dim, generator=gen, device=device)
    state.lone.real_buffer.add(Batch(obs, act, torch.randn(samples, generator=gen, device=device), next_obs,
                                torch.zeros(samples, device=device)))
    return state


def time_agent_update(state: RunState, repeats: int, progress: Progress) -> tuple[list[Timing], str]:
    """One agent update at the preset's batch, eagerly and (where it captures) as a CUDA graph; how it ran."""
    seeds = len(state.members)
    cfg, device, gen = state.config, state.device, state.members[0].generators["sample"]
    buffer = state.members[0].real_buffer
    batch = Batch(*(torch.stack(f) for f in zip(*[buffer.sample(cfg.agent.batch_size, gen) for _ in range(seeds)],
                                                strict=True)))  # S x B x ...
    gens = [gen] * seeds
    name = f"{cfg.agent.name}_update"
    progress(f"timing {name}", 1, COMPONENTS)
    eager = measure(lambda: state.agent.update(batch, gens), device, repeats * 5)
    mode = state.agent.use_cuda_graph(batch, gens) if cfg.train.cuda_graphs else "eager (train.cuda_graphs is off)"
    updates_per_step = float(cfg.agent.updates_per_step)
    if mode.startswith("eager"):
        return [Timing(name, eager, updates_per_step)], mode
    graphed = measure(lambda: state.agent.update(batch, gens), device, repeats * 5)
    return [Timing(name, graphed, updates_per_step), Timing(f"{name}_eager", eager, 0.0)], mode


def time_model_training(state: RunState, samples: int, repeats: int, progress: Progress) -> list[Timing]:
    """One training minibatch of the ensemble (eagerly, and as a CUDA graph where it captures) and one full retrain
    on the `samples` real transitions."""
    seeds = len(state.members)
    cfg, device, gen = state.config, state.device, state.members[0].generators["sample"]
    model, optimizer = state.model, state.model_optimizer
    assert model is not None and optimizer is not None
    data = state.members[0].real_buffer.ordered()
    inputs = torch.cat([data.obs, data.act], dim=-1).expand(seeds, -1, -1).contiguous()  # S x N x in
    targets = model_targets(data.obs, data.reward, data.next_obs).expand(seeds, -1, -1).contiguous()
    model.fit_normalizer(inputs)
    idx = torch.randint(samples, (cfg.model.ensemble_size, cfg.model.batch_size), generator=gen, device=device)
    x = model.normalize(inputs)[:, idx].flatten(0, 1)  # S E x B x in
    y = targets[:, idx].flatten(0, 1)
    progress("timing model_train_step", 2, COMPONENTS)
    eager = measure(lambda: model.train_step(optimizer, x, y), device, repeats * 5)
    if cfg.train.cuda_graphs:
        model.use_cuda_graph(optimizer, x, y)
    if model.graph is None:
        timings = [Timing("model_train_step", eager, 0.0)]
    else:
        graphed = measure(lambda: model.train_step(optimizer, x, y), device, repeats * 5)
        timings = [Timing("model_train_step", graphed, 0.0), Timing("model_train_step_eager", eager, 0.0)]
    progress(f"timing model_retrain (a full fit on {samples:,} transitions)", 3, COMPONENTS)
    generators = [state.members[0].generators["model"]] * seeds
    retrain = measure(lambda: fit_ensemble(model, optimizer, inputs, targets, generators), device, 1, warmup=0)
    return [*timings, Timing("model_retrain", retrain, 1.0 / cfg.rollout.train_freq)]


def time_rollout_step(state: RunState, repeats: int, progress: Progress) -> Timing:
    """One step of a branched rollout of the preset's rollout batch, through the run's model environment."""
    cfg, device, gen = state.config, state.device, state.lone.generators["sample"]
    start = state.lone.real_buffer.sample(cfg.rollout.batch_size, gen).obs
    sink = ReplayBuffer(cfg.rollout.batch_size, state.spec.obs_dim, state.spec.act_dim, device)
    env = model_env(state)

    def rollout_step() -> None:
        sink.ptr = sink.size = 0
        branched_rollout(env, state.agent, start, 1, sink, gen)

    progress("timing rollout_step", 4, COMPONENTS)
    return Timing("rollout_step", measure(rollout_step, device, max(3, repeats // 4)), 1.0 / cfg.rollout.train_freq)


def time_env(state: RunState, repeats: int, progress: Progress) -> list[Timing]:
    """One real env step (a fixed random action) and one evaluation episode."""
    env, device = state.lone.env, state.device
    env.reset(seed=0)
    action = env.action_space.sample()

    def env_step() -> None:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    progress("timing env_step", 5, COMPONENTS)
    stepped = Timing("env_step", measure(env_step, device, repeats * 50), 1.0)
    progress("timing eval_episode", 6, COMPONENTS)
    evaluation = measure(lambda: evaluate(state.agent, state.lone.eval_env, state.spec, 1, 0, device), device,
                         max(3, repeats // 4), warmup=1)
    per_env_step = state.config.train.eval_episodes / state.config.train.epoch_length
    return [stepped, Timing("eval_episode", evaluation, per_env_step)]
