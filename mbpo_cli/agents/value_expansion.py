"""DHMBPO's training rollout and the value-expansion returns computed from it.

A training rollout (TR) runs the policy `H` steps through a differentiable dynamics model from `B` start states,
in normalized-observation space: reparameterized actions `a_t ~ pi(s_t)` for t = 0..H, reparameterized model
steps (one member per block of the batch), and masks `m_t = 1` until a state terminates (`m_0 = 1`; once done, a
branch stays done). From it, with the discount vector `d_t = gamma^t` and a value `Q` at `(s_H, a_H)`:

    critic target:  y      = r_0 + sum_{t=1}^{H-1} d_t m_t (r_t - alpha log pi_t) + d_H m_H (Q - alpha log pi_H)
    actor return:   G      = sum_{t=0}^{H-1} d_t m_t (r_t - alpha log pi_t) + d_H m_H (Q - alpha log pi_H)

The target has no entropy term at t = 0 (it values the action `a_0` itself), the actor's return has one. The model
is met through `Dynamics`, bound by the engine, so this layer imports no model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

ModelStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""`(obs B x S, act B x A, noise B x S, order E) -> (reward B, next obs B x S)`, normalized observations; the
batch split into E blocks, `order` the member serving each (see `DynamicsEnsemble.step`)."""
Policy = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""`(obs B x S, noise B x A) -> (action B x A, log-probability B)`, reparameterized."""


@dataclass(frozen=True)
class Dynamics:
    """A differentiable model and the task's termination, as a rollout meets them."""

    step: ModelStep
    terminated: Callable[[torch.Tensor], torch.Tensor]
    """Normalized next observations `B x S` -> bool `B`."""
    members: int
    """E: the batch of a step is split into this many blocks."""


class Rollout(NamedTuple):
    """A rollout of `H` steps from `B` start states (normalized observations)."""

    states: torch.Tensor
    """`(H + 1) x B x S`: s_0 (the start states) .. s_H."""
    actions: torch.Tensor
    """`(H + 1) x B x A`: a_0 .. a_H."""
    logps: torch.Tensor
    """`(H + 1) x B`: log pi(a_t | s_t)."""
    rewards: torch.Tensor
    """`H x B`: the model's reward of step t."""
    masks: torch.Tensor
    """`(H + 1) x B` float: 1 while no earlier step terminated (m_0 = 1)."""


@dataclass(frozen=True)
class RolloutNoise:
    """The standard normal draws of one rollout (and how to read a member order from them)."""

    actions: torch.Tensor
    """`(H + 1) x B x A`: the policy's noise."""
    model: torch.Tensor
    """`H x B x S`: the model's noise."""
    orders: torch.Tensor
    """`H x E`: their argsort is the member order of each step (a uniformly random permutation)."""

    @staticmethod
    def size(horizon: int, batch: int, act_dim: int, obs_dim: int, members: int) -> int:
        """How many standard normal draws one rollout takes."""
        return (horizon + 1) * batch * act_dim + horizon * (batch * obs_dim + members)

    @classmethod
    def read(cls, flat: torch.Tensor, horizon: int, batch: int, act_dim: int, obs_dim: int,
             members: int) -> RolloutNoise:
        """The draws of one rollout from the start of `flat` (at least `size(...)` long)."""
        a = (horizon + 1) * batch * act_dim
        m = horizon * batch * obs_dim
        return cls(flat[:a].view(horizon + 1, batch, act_dim), flat[a : a + m].view(horizon, batch, obs_dim),
                   flat[a + m : a + m + horizon * members].view(horizon, members))


def training_rollout(policy: Policy, dynamics: Dynamics, starts: torch.Tensor, noise: RolloutNoise) -> Rollout:
    """Roll `policy` through `dynamics` from `starts` (`B x S`, normalized), `H` = `noise.model.shape[0]` steps.

    Differentiable wherever gradients are enabled: through the actions, the model's means and reward, into the
    policy's parameters (the model's own weights are the model's business: `DynamicsEnsemble.step` detaches them).
    """
    horizon = noise.model.shape[0]
    state = starts
    done = torch.zeros(starts.shape[0], dtype=torch.bool, device=starts.device)
    states, actions, logps, rewards, masks = [state], [], [], [], [torch.ones_like(starts[:, 0])]
    orders = noise.orders.argsort(dim=1)
    for t in range(horizon):
        action, logp = policy(state, noise.actions[t])
        reward, state = dynamics.step(state, action, noise.model[t], orders[t])
        done = done | dynamics.terminated(state)
        states.append(state)
        actions.append(action)
        logps.append(logp)
        rewards.append(reward)
        masks.append((~done).to(starts.dtype))
    action, logp = policy(state, noise.actions[horizon])
    actions.append(action)
    logps.append(logp)
    return Rollout(torch.stack(states), torch.stack(actions), torch.stack(logps), torch.stack(rewards),
                   torch.stack(masks))


def discounts(gamma: float, horizon: int, device: torch.device | None = None) -> torch.Tensor:
    """`H + 1`: gamma^t for t = 0..H."""
    return gamma ** torch.arange(horizon + 1, dtype=torch.float32, device=device)


def discounted_return(rollout: Rollout, terminal_q: torch.Tensor, alpha: torch.Tensor, discount: torch.Tensor,
                      entropy_from: int) -> torch.Tensor:
    """`B`: sum_{t<H} d_t m_t (r_t - alpha log pi_t) + d_H m_H (Q - alpha log pi_H), the entropy terms from step
    `entropy_from` on (1: the critic target, 0: the actor's return). `terminal_q` is `B`, `discount` `H + 1`."""
    values = torch.cat([rollout.rewards, terminal_q.unsqueeze(0)])
    values = torch.cat([values[:entropy_from], values[entropy_from:] - alpha * rollout.logps[entropy_from:]])
    return (discount.unsqueeze(1) * rollout.masks * values).sum(dim=0)


def value_target(rollout: Rollout, terminal_q: torch.Tensor, alpha: torch.Tensor,
                 discount: torch.Tensor) -> torch.Tensor:
    """The critics' target `B` for `(s_0, a_0)`: no entropy term at t = 0."""
    return discounted_return(rollout, terminal_q, alpha, discount, entropy_from=1)


def actor_return(rollout: Rollout, terminal_q: torch.Tensor, alpha: torch.Tensor,
                 discount: torch.Tensor) -> torch.Tensor:
    """The actor's objective `B` (to maximize): the entropy term from t = 0."""
    return discounted_return(rollout, terminal_q, alpha, discount, entropy_from=0)


def quantiles(values: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The `q` and `1 - q` quantiles of all of `values` (linear interpolation, as `torch.quantile`), from one sort
    and without a host synchronization."""
    ordered = values.flatten().sort().values
    last = ordered.shape[0] - 1

    def at(fraction: float) -> torch.Tensor:
        position = fraction * last
        low = min(int(position), last)
        high = min(low + 1, last)
        return ordered[low] + (position - low) * (ordered[high] - ordered[low])

    return at(q), at(1.0 - q)
