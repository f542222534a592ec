"""The MBPO training loop (Janner et al. 2019, Algorithm 2), the base agent alone and DHMBPO on the same path.

`train(state, callback)` advances a `RunState` (see `mbpo_cli.engine.state`) until `config.train.steps`
real steps, reporting through `callback` (progress each step, metrics at each epoch end).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeVar

import numpy as np
import torch

from mbpo_cli.agents.base import Agent
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.engine.buffer import mixed_batch
from mbpo_cli.engine.burst import burst_due, learning_burst
from mbpo_cli.engine.burst import update_mode as dhmbpo_update_mode
from mbpo_cli.engine.diagnostics import diagnose
from mbpo_cli.engine.envs import random_action, to_env_action
from mbpo_cli.engine.episodes import evaluate
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.events import Callback, EpochEvent, NoticeEvent, RolloutEvent, SeedFailedEvent, StepEvent
from mbpo_cli.engine.model_env import ModelEnv
from mbpo_cli.engine.pack import drop_failed
from mbpo_cli.engine.pipeline import ModelJob, Models, fit_failure, fit_models
from mbpo_cli.engine.rollout import (
    adaptive_rollout,
    branched_rollout,
    model_buffer_capacity,
    rollout_length,
    rollouts_kept,
)
from mbpo_cli.engine.seed_run import SeedRun
from mbpo_cli.engine.state import EpochAccumulator, RunState
from mbpo_cli.models.termination.custom import CustomFunctionError
from mbpo_cli.nn.batch import Batch

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


def env_step(state: RunState) -> tuple[list[float | None], bool]:
    """Every seed acts (uniformly at random during exploration), steps its env and stores its transition.

    Returns the return of each seed's episode that ended (None where none did) and whether the policy acted.
    """
    exploring = state.env_step < state.config.train.init_steps
    random_actions = [random_action(state.spec, seed.rng) for seed in state.members] if exploring else []
    actions = random_actions or policy_actions(state)
    finished: list[float | None] = []
    for place, (seed, action) in enumerate(zip(state.members, actions, strict=True)):
        ended = None
        if place not in state.failed:
            try:
                ended = step_seed(state, seed, action)
            except NumericalError as error:
                state.failed[place] = str(error)
        finished.append(ended)
    return finished, not exploring


def policy_actions(state: RunState) -> list[np.ndarray]:
    """Each seed's exploring action `A` from the policy, its noise drawn from the seed's `act` generator (a seed whose
    action is not finite goes to `state.failed`)."""
    obs = torch.as_tensor(np.stack([seed.obs for seed in state.members]), device=state.device).unsqueeze(1)
    acted = state.agent.act(obs, deterministic=False, generators=[seed.generators["act"] for seed in state.members])
    actions = list(acted[:, 0].cpu().numpy())
    for place, action in enumerate(actions):
        if not np.isfinite(action).all():
            state.failed[place] = f"non-finite action from the policy at env step {state.env_step}"
    return actions


def step_seed(state: RunState, seed: SeedRun, action: np.ndarray) -> float | None:
    """Step `seed`'s env with `action` and store the transition; the return of the episode it ended, if it did."""
    next_obs, reward, terminated, truncated, _ = seed.env.step(to_env_action(action, state.spec))
    next_obs = np.asarray(next_obs, dtype=np.float32)
    _check_env_output(state, next_obs, float(reward))
    seed.real_buffer.add(_transition(seed.obs, action, float(reward), next_obs, terminated, state.device))
    seed.episode_return += float(reward)
    seed.episode_length += 1
    finished = None
    if terminated or truncated:
        finished = seed.episode_return
        seed.episode_returns.append(finished)
        next_obs = np.asarray(seed.env.reset()[0], dtype=np.float32)
        _check_env_output(state, next_obs, 0.0)
        seed.episode_return, seed.episode_length = 0.0, 0
    seed.obs = next_obs
    return finished


def _check_env_output(state: RunState, obs: np.ndarray, reward: float) -> None:
    """NumericalError naming the environment when it returns a NaN or inf, before the value goes anywhere."""
    if not np.isfinite(obs).all():
        raise NumericalError(f"environment {state.config.env.id} returned a non-finite observation at env step "
                             f"{state.env_step}")
    if not math.isfinite(reward):
        raise NumericalError(f"environment {state.config.env.id} returned a non-finite reward ({reward}) at env "
                             f"step {state.env_step}")


def _transition(obs: np.ndarray, act: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool,
                device: torch.device) -> Batch:
    row = np.concatenate([obs, act, [reward], next_obs, [float(terminated)]]).astype(np.float32)
    t = torch.as_tensor(row, device=device).unsqueeze(0)
    d, a = obs.shape[0], act.shape[0]
    return Batch(t[:, :d], t[:, d : d + a], t[:, d + a], t[:, d + a + 1 : 2 * d + a + 1], t[:, -1])


def model_due(state: RunState) -> bool:
    """Whether the model is retrained (and rollouts generated) before this real step.

    After exploration: every `train_freq` steps (`rollout.when: step`, the paper), or at the start of each real
    episode and at the end of exploration (`rollout.when: episode`).
    """
    cfg = state.config
    since_start = state.env_step - cfg.train.init_steps
    if not state.uses_model or since_start < 0:
        return False
    if cfg.rollout.when == "episode":
        return since_start == 0 or state.lone.episode_length == 0
    return since_start % cfg.rollout.train_freq == 0


def models_of(state: RunState) -> Models:
    """The run's models and optimizers as one retrain trains them."""
    assert state.model is not None and state.model_optimizer is not None
    return Models(state.model, state.model_optimizer, state.done_model, state.done_optimizer)


def train_model(state: RunState) -> None:
    """Retrain the ensemble (and the learned termination) in place on all real data, early stopping on holdout
    splits."""
    infos = fit_models(models_of(state), [seed.real_buffer.ordered() for seed in state.members],
                       [seed.generators for seed in state.members], state.env_step,
                       state.config.model.max_train_seconds)
    for place, (seed, info) in enumerate(zip(state.members, infos, strict=True)):
        seed.model_info = info
        failure = fit_failure(info, state.env_step)
        if failure is not None:
            state.failed[place] = failure
    state.model_trained_at = state.env_step


def start_model_job(state: RunState) -> None:
    """`train.pipeline`: start retraining copies of the models on the real data of this step in a worker thread."""
    seed = state.lone
    state.model_job = ModelJob(models_of(state), seed.real_buffer.ordered(), seed.generators, state.env_step,
                               state.config.model.max_train_seconds)


def take_model_job(state: RunState) -> None:
    """`train.pipeline`: wait for the job started at the previous due point and make its models the run's."""
    assert state.model_job is not None
    job = state.model_job.result()
    models = job.models
    state.model, state.model_optimizer = models.model, models.optimizer
    state.done_model, state.done_optimizer = models.done_model, models.done_optimizer
    seed = state.lone
    for name, generator in job.generators.items():
        seed.generators[name].set_state(generator.get_state())
    state.model_trained_at, seed.model_info = job.started_at, dict(job.info)
    state.model_job = None


def update_model(state: RunState) -> None:
    """Bring the model up to date at a due point: retrain it in place (sequential loop), or, with `train.pipeline`,
    take the one trained in the background since the previous due point (the first model is trained in place)."""
    if state.model_job is not None:
        take_model_job(state)
    elif not state.config.train.pipeline or state.model_trained_at is None:
        train_model(state)


def model_env(state: RunState, member: int = 0) -> ModelEnv:
    """Seed `member`'s model as rollouts and diagnostics step it: its ensemble, its rollout members (its elites, or
    every member with `model.use_elites: false`), its termination and the run's reward."""
    cfg = state.config.model
    model = state.seed_model(member)
    members = model.elites[0] if cfg.use_elites else torch.arange(cfg.ensemble_size, device=state.device)
    return ModelEnv(model, members, state.seed_terminated(member), state.reward_fn)


def rollout_model(state: RunState) -> list[dict[str, float] | None]:
    """Branch rollouts of the current policy into each seed's model buffer: k steps from the schedule (the buffer
    sized for k), or, with `rollout.adaptive`, while the model trusts itself (the buffer holding exactly the retained
    generations). Returns each seed's adaptive rollout's branch-length metrics (None for the schedule)."""
    cfg = state.config
    if not cfg.rollout.adaptive:
        state.k = rollout_length(state.training_epoch, cfg.rollout.schedule)
    lengths: list[dict[str, float] | None] = []
    for place in range(len(state.members)):
        try:
            lengths.append(rollout_seed(state, place))
        except NumericalError as error:
            state.failed[place] = str(error)
            lengths.append(None)
    return lengths


def rollout_seed(state: RunState, member: int) -> dict[str, float] | None:
    """Seed `member`'s branched rollout (see `rollout_model`) of its own policy through its own model, from its real
    states or its initial-state pool, with its `rollout` generator."""
    cfg = state.config
    seed = state.members[member]
    assert state.model is not None and seed.model_buffer is not None
    gen = seed.generators["rollout"]
    if seed.initial_states is not None:
        pool = seed.initial_states
        start = pool[torch.randint(pool.shape[0], (cfg.rollout.batch_size,), generator=gen, device=state.device)]
    else:
        start = seed.real_buffer.sample(cfg.rollout.batch_size, gen).obs
    env, agent = model_env(state, member), state.seed_agent(member)
    if cfg.rollout.adaptive:
        return _adaptive_rollout(state, seed, agent, env, start)
    capacity = model_buffer_capacity(state.k, cfg.rollout.batch_size, cfg.train.epoch_length,
                                     cfg.rollout.train_freq, cfg.rollout.retain_epochs)
    if capacity != seed.model_buffer.capacity:
        seed.model_buffer = seed.model_buffer.resized(capacity)
    stats = branched_rollout(env, agent, start, state.k, seed.model_buffer, gen)
    check_custom_rewards(state)
    if not math.isfinite(stats.mean_reward):
        raise NumericalError(f"non-finite model prediction in rollouts at env step {state.env_step}")
    seed.model_info[metric_keys.ROLLOUT_MEAN_LENGTH] = stats.mean_length
    return None


def _adaptive_rollout(state: RunState, seed: SeedRun, agent: Agent, env: ModelEnv,
                      start: torch.Tensor) -> dict[str, float]:
    """The adaptive horizon's rollout of one seed. Branch lengths vary, so the model buffer is sized around each
    generation: room for the retained generations plus the longest possible new one, then exactly the retained
    ones."""
    cfg = state.config.rollout
    assert seed.model_buffer is not None
    state.k = cfg.adaptive_max_length
    kept = rollouts_kept(state.config.train.epoch_length, cfg.train_freq, cfg.retain_epochs)
    previous = seed.model_generations[len(seed.model_generations) - (kept - 1):] if kept > 1 else []
    room = sum(previous) + cfg.batch_size * cfg.adaptive_max_length
    if room != seed.model_buffer.capacity:
        seed.model_buffer = seed.model_buffer.resized(room)
    stats = adaptive_rollout(env, agent, start, cfg.adaptive_max_length, cfg.adaptive_scale, seed.model_buffer,
                             seed.generators["rollout"])
    check_custom_rewards(state)
    if not math.isfinite(stats.mean_reward):
        raise NumericalError(f"non-finite model prediction in rollouts at env step {state.env_step}")
    seed.model_generations = [*previous, stats.transitions]
    seed.model_buffer = seed.model_buffer.resized(max(1, sum(seed.model_generations)))
    metrics = stats.metrics()
    seed.model_info[metric_keys.ROLLOUT_MEAN_LENGTH] = metrics[metric_keys.ROLLOUT_LENGTH_MEAN]
    return metrics


def check_custom_rewards(state: RunState) -> None:
    """A CustomFunctionError when the custom reward function (if any) returned a NaN or inf for finite inputs since
    the last check: one device read per rollout, before the model's own check, so that the function is named for
    its fault and the model for its own."""
    if state.reward_fn is not None:
        state.reward_fn.check_finite()


def prepare_updates(state: RunState) -> str:
    """Capture the agent's update and the model's training step as CUDA graphs when on CUDA and
    `train.cuda_graphs`; says how they will run.

    Capture leaves every parameter and optimizer state as it was, and its example minibatches come from a
    dedicated generator, so the run's random streams (and therefore its numbers) are untouched.
    """
    if state.double_horizon is not None:
        return dhmbpo_update_mode(state)
    name = state.config.agent.name.upper()
    if not state.config.train.cuda_graphs:
        return f"{name} updates and model training: eager (train.cuda_graphs is off)"
    cfg, spec, device = state.config, state.spec, state.device
    gen = torch.Generator(device=device).manual_seed(cfg.train.seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device)

    b = cfg.agent.batch_size
    act = normal(b, spec.act_dim).tanh()
    if spec.discrete:
        act = torch.nn.functional.one_hot(act.argmax(dim=-1), spec.act_dim).float()
    example = Batch(normal(b, spec.obs_dim), act, normal(b), normal(b, spec.obs_dim), torch.zeros(b, device=device))
    seeds = len(state.members)
    example = Batch(*(t.expand(seeds, *t.shape).contiguous() for t in example))  # S x B x ...
    modes = [f"{name} updates: {state.agent.use_cuda_graph(example, [gen] * seeds)}"]
    if state.model is not None and cfg.train.pipeline:
        modes.append("model training: eager, in a worker thread (train.pipeline)")
    elif state.model is not None and state.model_optimizer is not None:
        e, m = seeds * cfg.model.ensemble_size, cfg.model.batch_size
        mode = state.model.use_cuda_graph(state.model_optimizer, normal(e, m, state.model.in_dim),
                                          normal(e, m, state.model.out_dim))
        modes.append(f"model training: {mode}")
    return "; ".join(modes)


def agent_updates(state: RunState) -> None:
    """G agent updates; each seed's G minibatches are sampled at once (real_ratio real, the rest model data)."""
    cfg = state.config.agent
    groups = cfg.updates_per_step
    generators = [seed.generators["sample"] for seed in state.members]
    per_seed = [mixed_batch(seed.real_buffer, seed.model_buffer, groups, cfg.batch_size, cfg.real_ratio,
                            generator) for seed, generator in zip(state.members, generators, strict=True)]
    batches = Batch(*(torch.stack(fields) for fields in zip(*per_seed, strict=True)))  # S x G x B x ...
    check = torch.zeros(len(state.members), device=state.device)
    acc = state.epoch_acc
    for g in range(groups):
        info = state.agent.update(Batch(*(t[:, g] for t in batches)), generators)
        for key, value in info.items():
            acc.add(key, value)
            check += value
        acc.updates += 1
    state.agent_updates += groups
    for place, finite in enumerate(torch.isfinite(check).tolist()):
        if not finite:
            state.failed[place] = f"non-finite loss in the {cfg.name.upper()} update at env step {state.env_step}"


def model_diagnostics(state: RunState, member: int, agent: Agent, eval_seed: int) -> dict[str, float]:
    """One seed's model diagnostics for the epoch (`mbpo_cli.engine.diagnostics`), from its evaluation's initial
    states.

    Read-only: resetting the evaluation env with its seeds changes nothing the next evaluation sees (it reseeds
    every episode), and the random windows come from a generator seeded from the seed and the epoch."""
    cfg = state.config
    assert state.model_trained_at is not None
    seed = state.members[member]
    episodes = max(cfg.diagnostics.imagined_episodes, 0)
    starts = np.stack([seed.eval_env.reset(seed=eval_seed + i)[0] for i in range(episodes)]).astype(np.float32)
    limit = seed.eval_env.spec.max_episode_steps if seed.eval_env.spec is not None else None
    cap = cfg.diagnostics.imagined_cap
    diag = replace(cfg.diagnostics, imagined_cap=min(cap, limit or cap))
    generator = torch.Generator(device=state.device).manual_seed(seed.seed * 7919 + state.epoch)
    return diagnose(model_env(state, member), agent, seed.real_buffer, state.env_step - state.model_trained_at,
                    torch.as_tensor(starts, device=state.device), diag, generator)


def end_epoch(state: RunState) -> list[dict[str, float]]:
    """Evaluate every seed, then collect each seed's metrics for the epoch (one device read) and reset the
    accumulator."""
    acc = state.epoch_acc
    means: list[dict[str, float]] = [{} for _ in state.members]
    if acc.updates:
        keys = sorted(acc.sums)
        values = torch.stack([acc.sums[k].reshape(-1) for k in keys]).tolist()  # K x S
        for key, per_seed in zip(keys, values, strict=True):
            for mean, value in zip(means, per_seed, strict=True):
                mean[key] = value / acc.counts.get(key, acc.updates)
        for mean, agent_metrics in zip(means, state.agent.epoch_metrics(), strict=True):
            mean.update(agent_metrics)
    metrics = [seed_metrics(state, i, mean) for i, mean in enumerate(means)]
    state.epoch_acc = EpochAccumulator()
    for seed in state.members:
        seed.episode_returns = []
    return metrics


def seed_metrics(state: RunState, member: int, update_means: dict[str, float]) -> dict[str, float]:
    """Seed `member`'s epoch metrics: its evaluation, its training episodes, its updates' means `update_means` (and
    the agent's state), its model's diagnostics and retrain, the time spent per phase."""
    cfg = state.config
    acc = state.epoch_acc
    seed = state.members[member]
    agent = state.seed_agent(member)
    start = time.perf_counter()
    episodes = cfg.train.eval_episodes
    eval_seed = (seed.seed + 1) * 1_000_003 + state.epoch * max(episodes, 1)
    returns, lengths = evaluate(agent, seed.eval_env, state.spec, episodes, eval_seed % 2**31, state.device)
    acc.seconds["eval"] += time.perf_counter() - start
    metrics: dict[str, float] = {"epoch": float(state.epoch), "training_epoch": float(state.training_epoch)}
    if returns:
        metrics[metric_keys.EVAL_RETURN] = float(np.mean(returns))
        metrics[metric_keys.EVAL_RETURN_STD] = float(np.std(returns))
        metrics[metric_keys.EVAL_LENGTH] = float(np.mean(lengths))
    if seed.episode_returns:
        metrics["train_return"] = float(np.mean(seed.episode_returns))
    metrics.update(update_means)
    if state.uses_model and cfg.diagnostics.enabled and state.model_trained_at is not None:
        start = time.perf_counter()
        metrics.update(model_diagnostics(state, member, agent, eval_seed % 2**31))
        check_custom_rewards(state)
        acc.seconds["diag"] += time.perf_counter() - start
    if state.double_horizon is not None:
        metrics.update(seed.model_info)
    if state.uses_model:
        assert seed.model_buffer is not None
        metrics.update(seed.model_info)
        metrics["rollout_k"] = float(state.k)
        metrics["model_buffer_size"] = float(len(seed.model_buffer))
    metrics["agent_updates"] = float(state.agent_updates)
    for phase in state.phases:
        metrics[f"{metric_keys.TIME_PREFIX}{phase}"] = acc.seconds[phase]
    return metrics


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def prepare(state: RunState, notify: Callback) -> None:
    """Decide, once per process, how updates run (`prepare_updates`); on CUDA, say so."""
    state.update_mode = prepare_updates(state)
    state.updates_prepared = True
    if state.device.type == "cuda":
        notify(NoticeEvent(state.env_step, state.update_mode))


def model_phase(state: RunState, notify: Callback) -> None:
    """Bring the model up to date (retrain it, or take the one trained in the background) and branch k-step rollouts
    of the current policy; with the pipeline, start the next retrain in the background. A seed whose retrain or
    rollout went non-finite leaves the pack."""
    with timed(state, "model"):
        update_model(state)
    leave_pack(state, notify)
    with timed(state, "rollout"):
        branch_lengths = indexed(state, rollout_model(state))
    leave_pack(state, notify)
    for member, lengths in branch_lengths:
        if lengths is not None and member in {seed.index for seed in state.members}:
            notify(RolloutEvent(state.env_step, lengths, member))
    if state.config.train.pipeline and state.model_trained_at != state.env_step:
        start_model_job(state)


def indexed(state: RunState, values: list[T]) -> list[tuple[int, T]]:
    """Each seed's value (`values` in the pack's order) with the seed's index in the pack as built (events' name)."""
    return [(seed.index, value) for seed, value in zip(state.members, values, strict=True)]


def leave_pack(state: RunState, notify: Callback) -> None:
    """The seeds whose numbers went non-finite in the phase just run leave the pack (each told as a
    `SeedFailedEvent`); when none would be left (a lone run), NumericalError."""
    for member, message in drop_failed(state):
        notify(SeedFailedEvent(state.env_step, member, message))


@contextmanager
def timed(state: RunState, phase: str) -> Iterator[None]:
    """Add the wall time of the block to the epoch's seconds of `phase`."""
    start = time.perf_counter()
    yield
    state.epoch_acc.seconds[phase] += time.perf_counter() - start


def train(state: RunState, callback: Callback | None = None, should_stop: Callable[[], bool] | None = None) -> RunState:
    """Run MBPO (or the base agent alone) from `state` until `config.train.steps` real steps or `should_stop()`
    (asked before every step).

    Each real step: retrain the model and branch rollouts when due, act in the env, then G agent
    updates on mixed real/model minibatches (DHMBPO: none; a learning burst after each iteration's last step).
    Each epoch end: evaluate and report metrics. A retrain still running
    in the background (`train.pipeline`) when this returns stays in `state.model_job`; one still running when an
    error ends the loop is cancelled. A custom function's failure (CustomFunctionError) gets the env step.
    """
    cfg = state.config
    total, epoch_length, init_steps = cfg.train.steps, cfg.train.epoch_length, cfg.train.init_steps
    notify = callback or (lambda event: None)
    try:
        while state.env_step < total and not (should_stop is not None and should_stop()):
            # -- Once per process, after exploration: capture the update steps as CUDA graphs when on CUDA.
            if not state.updates_prepared and state.env_step >= init_steps:
                prepare(state, notify)
            state.agent.on_env_step(state.env_step)

            # -- Model: when due after exploration, bring the model up to date (retrain it, or take the one
            #    trained in the background) and branch k-step rollouts of the current policy; with the pipeline,
            #    start the next retrain in the background.
            if model_due(state):
                model_phase(state, notify)

            # -- Environment: one real step for every seed (uniform random actions during exploration).
            with timed(state, "env"):
                acted, policy_acted = env_step(state)
                finished = indexed(state, acted)
            leave_pack(state, notify)

            # -- Agent: G updates on minibatches of real and model data (DHMBPO learns in bursts instead).
            if policy_acted and state.double_horizon is None:
                with timed(state, "agent"):
                    agent_updates(state)
                leave_pack(state, notify)

            state.env_step += 1

            # -- DHMBPO: at the end of each iteration, a learning burst (retrain the model, distribution
            #    rollouts, value-expansion updates of critics and actor through the model).
            if burst_due(state):
                learning_burst(state)
            staying = {seed.index for seed in state.members}
            for member, episode_return in finished:
                if member in staying:
                    notify(StepEvent(state.env_step, episode_return, member))
            if state.env_step % epoch_length == 0 or state.env_step == total:
                for member, metrics in indexed(state, end_epoch(state)):
                    notify(EpochEvent(state.env_step, state.epoch, metrics, member))
    except BaseException as error:
        if state.model_job is not None:
            state.model_job.cancel()
            state.model_job = None
        if isinstance(error, CustomFunctionError):
            error.env_step = state.env_step
        raise
    return state
