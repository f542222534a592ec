"""Model diagnostics recorded at each epoch end: how wrong the model is, how that compounds, and whether the policy
exploits it (the paper's compounding-error and model-vs-real-return pictures, for the user's own run).

Every measurement is read-only: no parameter, buffer or run generator is touched, and what is random draws from a
generator seeded from the run's seed and epoch, so a run's numbers are the same with diagnostics on or off.
"""

from __future__ import annotations

import torch

from mbpo_cli.agents.base import Agent, lone_act
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import DiagnosticsConfig
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.model_env import ModelEnv
from mbpo_cli.nn.batch import Batch

OPEN_LOOP_PREFIX = metric_keys.DIAG_OPEN_LOOP_PREFIX
"""Metric keys of the open-loop error: `diag_open_loop_h1` .. `diag_open_loop_hH`."""


def target_scale(real: Batch) -> torch.Tensor:
    """Per-dimension std `1 + D` of the real `[reward, next_obs]` (1 where below 1e-6, as a constant reward): errors
    are in these units, so 1.0 is as wrong as predicting each dimension's mean."""
    std = torch.cat([real.reward.unsqueeze(-1), real.next_obs], dim=-1).std(dim=0, unbiased=False)
    return torch.where(std < 1e-6, torch.ones_like(std), std)


def one_step(env: ModelEnv, new: Batch, scale: torch.Tensor) -> dict[str, float]:
    """On real transitions `N` the model has not been trained on: the normalized MSE of the rollout members' average
    prediction of the next observation and of the reward, and the members' mean disagreement (`disagreement`)."""
    predictions = env.predict(new.obs, new.act)
    average = predictions.mean.mean(dim=0)
    obs_error = ((new.obs + average[:, 1:] - new.next_obs) / scale[1:]).pow(2).mean()
    reward_error = ((average[:, 0] - new.reward) / scale[0]).pow(2).mean()
    spread = predictions.disagreement().mean()
    return {metric_keys.DIAG_MODEL_ERROR: float(obs_error), metric_keys.DIAG_REWARD_ERROR: float(reward_error),
            metric_keys.DIAG_DISAGREEMENT: float(spread)}


def sequence_starts(data: Batch, horizon: int) -> torch.Tensor:
    """Indices t of the (oldest-first) real data where t .. t + horizon - 1 are consecutive steps of one episode:
    each next observation is the following row's observation and no step before the last terminated."""
    n = data.obs.shape[0]
    if n < horizon:
        return torch.zeros(0, dtype=torch.long, device=data.obs.device)
    links = (data.next_obs[:-1] == data.obs[1:]).all(dim=-1) & (data.done[:-1] == 0)
    broken = torch.cat([torch.zeros(1, device=links.device), (~links).float().cumsum(0)])
    starts = torch.arange(n - horizon + 1, device=data.obs.device)
    return starts[broken[starts + horizon - 1] == broken[starts]]


def open_loop(env: ModelEnv, data: Batch, horizon: int, samples: int, scale: torch.Tensor,
              generator: torch.Generator) -> list[float] | None:
    """Normalized MSE of the next observation at rollout steps h = 1..H when the model replays real action
    sequences from real start states, feeding back its own predictions (the rollout members' average; no sampling,
    and neither the custom reward nor the termination: the error is the model's own).
    None when the real data holds no sequence of H consecutive steps."""
    starts = sequence_starts(data, horizon)
    if starts.shape[0] == 0:
        return None
    pick = starts[torch.randint(starts.shape[0], (min(samples, starts.shape[0]),), generator=generator,
                                device=starts.device)]
    obs = data.obs[pick]
    errors = []
    for h in range(horizon):
        _, obs = env.model.mean_step(obs.unsqueeze(0), data.act[pick + h].unsqueeze(0), env.members.unsqueeze(0))
        obs = obs[0]
        errors.append(((obs - data.next_obs[pick + h]) / scale[1:]).pow(2).mean())
    return torch.stack(errors).tolist()


def imagined_returns(env: ModelEnv, agent: Agent, starts: torch.Tensor, cap: int) -> torch.Tensor:
    """Returns `N` of the deterministic policy inside the model from real initial observations `N x D`: the rollout
    members' average prediction (`ModelEnv.mean_step`), the run's termination function, at most `cap` steps. A step
    whose prediction overflows (a non-finite reward or state, which no termination function can judge) ends its
    episode unpaid."""
    n = starts.shape[0]
    returns = torch.zeros(n, device=starts.device)
    live = torch.arange(n, device=starts.device)
    obs = starts
    for _ in range(cap):
        act = lone_act(agent, obs, deterministic=True)
        reward, next_obs, done = env.mean_step(obs, act)
        finite = torch.isfinite(reward) & torch.isfinite(next_obs).all(dim=-1)
        returns[live] += torch.where(finite, reward, torch.zeros_like(reward))
        alive = finite & ~done
        if not bool(alive.any()):
            break
        obs, live = next_obs[alive], live[alive]
    return returns


@torch.no_grad()
def diagnose(env: ModelEnv, agent: Agent, real: ReplayBuffer, new_steps: int, starts: torch.Tensor,
             config: DiagnosticsConfig, generator: torch.Generator) -> dict[str, float]:
    """The epoch's diagnostics as metrics: one-step error and disagreement on the `new_steps` newest real
    transitions (those since the last retrain; skipped when there are none), open-loop error at h = 1..H, and the
    model return from the initial observations `starts` (`N x D`, those of the real evaluation)."""
    data = real.ordered()
    scale = target_scale(data)
    metrics: dict[str, float] = {}
    new = min(new_steps, data.obs.shape[0])
    if new > 0:
        metrics.update(one_step(env, Batch(*(t[-new:] for t in data)), scale))
    errors = open_loop(env, data, config.horizon, config.samples, scale, generator)
    for h, error in enumerate(errors or [], start=1):
        metrics[f"{OPEN_LOOP_PREFIX}{h}"] = error
    if starts.shape[0]:
        imagined = imagined_returns(env, agent, starts, config.imagined_cap)
        metrics[metric_keys.DIAG_MODEL_RETURN] = float(imagined.mean())
    return metrics
