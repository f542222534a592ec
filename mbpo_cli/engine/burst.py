"""DHMBPO's learning burst: all of its learning, once per iteration of real steps (`algo: dhmbpo`).

At the end of each `dhmbpo.iteration_steps` real steps from the end of exploration on, with the policy frozen
while it collected them:

  1. label the new real transitions, refresh the normalizers and retrain the model (`fit_dynamics`; the first
     burst's patience and epoch cap times `first_model_factor`); the actor's normalizer follows the model's;
  2. fresh Adam optimizers, and an empty DR buffer (it lives for the burst);
  3. one DR, then critic-only updates (the critics' warm-up on the new model);
  4. joint updates, one per real step of the iteration (`first_updates_factor` times as many in the first burst),
     with a DR before every `distribution_every`-th.

Its time goes to the epoch's `model` (retrain), `rollout` (DRs) and `agent` (updates) phases; its metrics to the
epoch's sums (updates) and `model_info` (retrain, DR buffer). The burst runs between two real steps and leaves
nothing half-done, so every checkpoint falls between bursts.
"""

from __future__ import annotations

import math
import time

import torch

from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.engine.double_horizon import StateBuffer, distribution_rollout
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.state import RunState
from mbpo_cli.models.dynamics_fit import fit_dynamics


def burst_due(state: RunState) -> bool:
    """Whether the real step just taken ends an iteration from the end of exploration on (DHMBPO runs only)."""
    if state.double_horizon is None:
        return False
    since = state.env_step - state.config.train.init_steps
    return since >= 0 and since % state.config.dhmbpo.iteration_steps == 0


def dhmbpo_agent(state: RunState) -> DHMBPOAgent:
    """The run's agent, a DHMBPO one."""
    assert isinstance(state.agent, DHMBPOAgent)
    return state.agent


def update_mode(state: RunState) -> str:
    """How a DHMBPO run's updates run: captured as CUDA graphs at each burst, or eagerly."""
    if not state.config.train.cuda_graphs:
        return "DHMBPO updates: eager (train.cuda_graphs is off)"
    if state.device.type != "cuda":
        return "DHMBPO updates: eager (CUDA graphs need a CUDA device)"
    return "DHMBPO updates: captured as CUDA graphs at each burst (checked against eager execution)"


def retrain(state: RunState, factor: float) -> None:
    """Label the real transitions added since the last burst, retrain the model on all real data (normalizers
    refreshed), give the actor the model's observation normalizer; the retrain's metrics go to `model_info`."""
    assert state.double_horizon is not None
    cfg = state.config.dhmbpo.model
    model, labels = state.double_horizon.model, state.double_horizon.labels
    seed = state.lone
    generator = seed.generators["model"]
    labels.extend(state.env_step, len(seed.real_buffer), cfg.validation_fraction, cfg.bootstrap, generator)
    fit = fit_dynamics(model, seed.real_buffer.ordered(), labels, factor, generator)
    if not math.isfinite(fit.validation_nll):
        raise NumericalError(f"non-finite validation loss of the DHMBPO model at env step {state.env_step}")
    actor = dhmbpo_agent(state).actor
    actor.obs_mean.copy_(model.obs_mean)
    actor.obs_std.copy_(model.obs_std)
    seed.model_info = fit.metrics()
    state.model_trained_at = state.env_step


def learning_burst(state: RunState) -> None:
    """The burst at the end of an iteration (see the module)."""
    assert state.double_horizon is not None
    cfg = state.config.dhmbpo
    agent = dhmbpo_agent(state)
    seconds = state.epoch_acc.seconds
    first = state.env_step == state.config.train.init_steps

    start = time.perf_counter()
    retrain(state, cfg.first_model_factor if first else 1)
    seconds["model"] += time.perf_counter() - start

    start = time.perf_counter()
    agent.new_optimizers()
    if state.config.train.cuda_graphs and state.device.type == "cuda":
        generator = torch.Generator(device=state.device).manual_seed(state.config.train.seed)
        example = torch.randn(cfg.batch_size, state.spec.obs_dim, generator=generator, device=state.device)
        state.update_mode = f"DHMBPO updates: {agent.capture(example, generator)}"
    buffer = StateBuffer(cfg.distribution_buffer, state.spec.obs_dim, state.device)
    check = torch.zeros((), device=state.device)
    rollout_seconds = fill(state, buffer, cfg.warmup_states)
    sample = state.lone.generators["sample"]
    for _ in range(cfg.warmup_updates):
        check += record(state, agent.learn(start_states(state, buffer), sample, critic_only=True))
    updates = cfg.joint_updates(first)
    for i in range(updates):
        if i % cfg.distribution_every == 0:
            rollout_seconds += fill(state, buffer, cfg.distribution_states)
        check += record(state, agent.learn(start_states(state, buffer), sample, critic_only=False))
    if not bool(torch.isfinite(check)):
        raise NumericalError(f"non-finite loss in a DHMBPO update at env step {state.env_step}")
    state.agent_updates += cfg.warmup_updates + updates
    if cfg.distribution_horizon > 0:
        state.lone.model_info["dr_buffer_states"] = float(len(buffer))
    seconds["rollout"] += rollout_seconds
    seconds["agent"] += time.perf_counter() - start - rollout_seconds


def fill(state: RunState, buffer: StateBuffer, states: int) -> float:
    """One DR of at least `states` states into `buffer` (none without DRs); its wall time in seconds."""
    assert state.double_horizon is not None
    agent = dhmbpo_agent(state)
    if agent.config.distribution_horizon <= 0:
        return 0.0
    start = time.perf_counter()
    assert agent.dynamics is not None
    seed = state.lone
    distribution_rollout(agent, agent.dynamics, seed.real_buffer, state.double_horizon.model, buffer, states,
                         seed.generators["rollout"])
    return time.perf_counter() - start


def start_states(state: RunState, buffer: StateBuffer) -> torch.Tensor:
    """A batch of normalized training-rollout start states: from the DR buffer, or real states without DRs."""
    assert state.double_horizon is not None
    cfg = state.config.dhmbpo
    generator = state.lone.generators["sample"]
    if cfg.distribution_horizon > 0:
        return buffer.sample(cfg.batch_size, generator)
    return state.double_horizon.model.normalize_obs(state.lone.real_buffer.sample(cfg.batch_size, generator).obs)


def record(state: RunState, info: dict[str, torch.Tensor]) -> torch.Tensor:
    """Add one update's losses to the epoch's sums; their total (for the burst's one finiteness check)."""
    acc = state.epoch_acc
    total = torch.zeros((), device=state.device)
    for key, value in info.items():
        acc.add(key, value)
        total = total + value
    acc.updates += 1
    return total
