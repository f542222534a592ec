"""CPU comparison of the engine's components with mbrl-lib 0.2.0's, timed interleaved in one process.

Hopper shapes (obs 11, act 3), `resolve_config(preset="hopper")` on our side:

* ``sac_update``: ours ``mbpo_cli.agents.sac.SAC.update(batch, [gen])`` (a pack of one seed) against pranz24's
  ``SAC.update_parameters(memory, 256, updates)`` as vendored in ``mbrl.third_party`` (2 x 256 ReLU,
  automatic entropy tuning, target update every call). Both get one fixed minibatch of 256: ours as
  tensors, theirs as the numpy arrays its memory returns, so its numpy -> tensor copies count as its cost.
* ``model_minibatch``: one loss + backward + Adam step of our ``GaussianEnsemble`` (7 x 4 x 200 SiLU,
  per-layer L2 terms in the loss, as the engine trains it) on 7 x 256 inputs, against one
  ``GaussianMLP.update(model_in, optimizer, target)`` on the same shapes with Adam(lr 1e-3,
  weight_decay 1e-5), as mbrl-lib's ``ModelTrainer`` builds it for Hopper.
* ``rollout_step``: ours ``branched_rollout(ModelEnv(model, elites, termination.hopper), agent, start_obs,
  k=1, buffer, gen)`` from 100,000 states, against one step of mbrl-lib's MBPO rollout
  (``mbrl.algorithms.mbpo.rollout_model_and_populate_sac_buffer`` with horizon 1, minus its start-state
  sampling, which ours does not do either): ``ModelEnv.reset``, ``SACAgent.act`` (pranz24 policy, numpy in
  and out), ``ModelEnv.step`` (``OneDTransitionRewardModel(GaussianMLP, target_is_delta, normalize in
  double precision, learned_rewards)`` with 5 elites and ``random_model`` propagation), and
  ``ReplayBuffer.add_batch``.

Every contender of a component is warmed up, then timed call by call in rounds that alternate the
order (A B C, C B A, ...), so that load drift on a shared machine hits all of them alike. Results are
medians in milliseconds. ``--variants`` adds alternative implementations of our side (and context rows),
each against the same mbrl-lib baseline.

Needs ``mbrl==0.2.0`` importable (see benchmarks/README.md); without it, prints a skip message and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

OBS, ACT = 11, 3
SAC_BATCH = 256
TARGETS = {"sac_update": 2.0, "model_minibatch": 1.5, "rollout_step": 5.0}


@dataclass
class Contender:
    """One implementation of a component and its per-call wall times (ms)."""

    label: str
    fn: Callable[[], object]
    side: str
    """ours, mbrl, or context (a reference point that is neither side as shipped)."""
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "side": self.side, "median_ms": round(self.median, 4),
                "min_ms": round(min(self.samples), 4), "max_ms": round(max(self.samples), 4),
                "calls": len(self.samples)}


@dataclass
class Component:
    """A component: our implementation, mbrl-lib's, and optional variants, timed together."""

    name: str
    what: str
    contenders: list[Contender]
    rounds: int
    block: int
    """Calls of one contender in a row within a round."""
    warmup: int
    notes: list[str] = field(default_factory=list)

    def get(self, label: str) -> Contender:
        return next(c for c in self.contenders if c.label == label)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def spin_up(seconds: float) -> None:
    """Keep the threads busy for a while before timing anything.

    On these VMs the first second or so of a process runs small parallel kernels 10-100x slower
    (threads and cores waking up); this keeps that out of the first component's numbers.
    """
    import torch

    a = torch.randn(384, 384)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)


def run_interleaved(component: Component) -> None:
    """Warm every contender up, then time them call by call in rounds of alternating order."""
    for contender in component.contenders:
        for _ in range(component.warmup):
            contender.fn()
    for r in range(component.rounds):
        order = component.contenders if r % 2 == 0 else component.contenders[::-1]
        for contender in order:
            for _ in range(component.block):
                start = time.perf_counter()
                contender.fn()
                contender.samples.append((time.perf_counter() - start) * 1000.0)


@contextmanager
def bf16_matmul() -> Iterator[None]:
    """fp32 matmuls computed by oneDNN in bfloat16 (AMX/AVX512-BF16), fp32 accumulation and storage."""
    import torch

    previous = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = previous


def under_bf16(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with bf16_matmul():
            return fn()

    return call


# ---------------------------------------------------------------------------------------------
# Our side: variants of the SAC networks (same math as mbpo_cli.sac, other kernels)
# ---------------------------------------------------------------------------------------------


def _variant_classes() -> tuple[type, type]:
    """LinearActor and LinearTwinCritic, built lazily so that the module imports without torch work."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from mbpo_cli.agents.networks import Critics
    from mbpo_cli.agents.sac import LOG_STD_MAX, LOG_STD_MIN, Actor

    class LinearActor(Actor):
        """`mbpo_cli.sac.Actor` with plain nn.Linear layers (addmm) instead of a 1-member BatchedMLP (baddbmm)."""

        def __init__(self, source: Actor) -> None:
            nn.Module.__init__(self)
            layers: list[nn.Module] = []
            n = len(source.net.weights)
            for i, (w, b) in enumerate(zip(source.net.weights, source.net.biases, strict=True)):
                linear = nn.Linear(w.shape[1], w.shape[2])
                with torch.no_grad():
                    linear.weight.copy_(w[0].T)
                    linear.bias.copy_(b[0, 0])
                layers.append(linear)
                if i < n - 1:
                    layers.append(nn.ReLU())
            self.net = nn.Sequential(*layers)
            self.act_dim = source.act_dim

        def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
            return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    class LinearTwinCritic(Critics):
        """`mbpo_cli.agents.networks.Critics` (2 members, one seed) as two plain MLPs (addmm each), stacked to
        `1 x 2 x B` (the seed axis, then the members)."""

        def __init__(self, source: Critics) -> None:
            nn.Module.__init__(self)
            self.weights = nn.ParameterList()
            self.biases = nn.ParameterList()
            for member in range(2):
                for w in source.net.weights:
                    self.weights.append(nn.Parameter(w[member].T.detach().clone()))
            for member in range(2):
                for b in source.net.biases:
                    self.biases.append(nn.Parameter(b[member, 0].detach().clone()))
            self.depth = len(source.net.weights)

        def forward(
            self, obs: torch.Tensor, act: torch.Tensor, params: list[torch.Tensor] | None = None
        ) -> torch.Tensor:
            n = 2 * self.depth
            weights = list(self.weights) if params is None else list(params[:n])
            biases = list(self.biases) if params is None else list(params[n:])
            x = torch.cat([obs, act], dim=-1)
            out = []
            for member in range(2):
                h = x
                for i in range(self.depth):
                    k = member * self.depth + i
                    h = F.linear(h, weights[k], biases[k])
                    if i < self.depth - 1:
                        h = torch.relu(h)
                out.append(h.squeeze(-1))
            return torch.stack(out, dim=1)

    return LinearActor, LinearTwinCritic


def variant_agent(sac_config: Any, linear_actor: bool, linear_critic: bool, seed: int = 0) -> Any:
    """An `mbpo_cli.sac.SAC` whose actor and/or critics are swapped for the nn.Linear versions."""
    import torch

    from mbpo_cli.agents.sac import SAC

    linear_actor_cls, linear_critic_cls = _variant_classes()
    torch.manual_seed(seed)
    agent = SAC(OBS, ACT, sac_config)
    if linear_actor:
        agent.actor = linear_actor_cls(agent.actor)
        agent.actor_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=sac_config.lr, fused=True)
    if linear_critic:
        agent.critic = linear_critic_cls(agent.critic)
        agent.critic_target = linear_critic_cls(agent.critic_target).requires_grad_(False)
        agent.critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=sac_config.lr, fused=True)
    return agent


def _actor_alpha_target_steps(agent: Any, actor_loss: Any, logp: Any) -> None:
    """The update's tail, as `mbpo_cli.agents.sac.SAC.update_with_noise` does it: actor step, temperature step,
    target lerp."""
    import torch

    agent.actor_optimizer.zero_grad(set_to_none=True)
    actor_loss.backward()
    agent.actor_optimizer.step()
    alpha_loss = -(agent.log_alpha * (logp.detach() + agent.target_entropy)).mean()
    agent.alpha_optimizer.zero_grad(set_to_none=True)
    alpha_loss.backward()
    agent.alpha_optimizer.step()
    with torch.no_grad():
        torch._foreach_lerp_(list(agent.critic_target.parameters()), list(agent.critic.parameters()),
                             agent.config.tau)


def one_pass_actor_update(agent: Any) -> Callable[[Any, Any], None]:
    """Our update with one actor forward over [next_obs; obs] (512 rows) instead of two of 256.

    The actor's parameters do not change between its two uses, so the math is the same (the noise is
    drawn in one call); the next_obs half is detached, but its rows still go through the actor backward.
    """
    import torch

    def update(batch: Any, generators: list[torch.Generator]) -> None:
        gamma = agent.gamma
        alpha = agent.log_alpha.exp().detach()
        both, both_logp = agent.actor.sample(torch.cat([batch.next_obs, batch.obs], dim=1), generators)
        n = batch.obs.shape[1]
        next_act, next_logp = both[:, :n].detach(), both_logp[:, :n].detach()
        act, logp = both[:, n:], both_logp[:, n:]
        with torch.no_grad():
            next_q = agent.critic_target(batch.next_obs, next_act).min(dim=1).values
            target = batch.reward + gamma * (1.0 - batch.done) * (next_q - alpha * next_logp)
        q = agent.critic(batch.obs, batch.act)
        critic_loss = 0.5 * (q - target.unsqueeze(1)).pow(2).mean(dim=2).sum()
        agent.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        agent.critic_optimizer.step()
        frozen = [p.detach() for p in agent.critic.parameters()]
        q_pi = agent.critic(batch.obs, act, frozen).min(dim=1).values
        _actor_alpha_target_steps(agent, (alpha * logp - q_pi).mean(), logp)

    return update


def compiled_loss_update(agent: Any) -> Callable[[Any, Any], None]:
    """Our update with the two loss computations (forward and their backward) under torch.compile.

    Noise is drawn outside the compiled regions (a generator argument breaks the graph); backward,
    optimizer steps and the target update stay eager.
    """
    import torch

    gamma = agent.gamma

    @torch.compile(dynamic=False)
    def critic_loss_fn(obs, act, reward, next_obs, done, noise, alpha):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            next_act, next_logp = agent.actor.sample(next_obs, noise=noise)
            next_q = agent.critic_target(next_obs, next_act).min(dim=1).values
            target = reward + gamma * (1.0 - done) * (next_q - alpha * next_logp)
        q = agent.critic(obs, act)
        return 0.5 * (q - target.unsqueeze(1)).pow(2).mean(dim=2).sum()

    @torch.compile(dynamic=False)
    def actor_loss_fn(obs, noise, alpha, frozen):  # type: ignore[no-untyped-def]
        act, logp = agent.actor.sample(obs, noise=noise)
        q_pi = agent.critic(obs, act, frozen).min(dim=1).values
        return (alpha * logp - q_pi).mean(), logp

    def update(batch: Any, generators: list[torch.Generator]) -> None:
        alpha = agent.log_alpha.exp().detach()
        noise = torch.randn(2, batch.obs.shape[1], ACT, generator=generators[0]).unsqueeze(1)  # 2 x 1 seed x B x A
        critic_loss = critic_loss_fn(batch.obs, batch.act, batch.reward, batch.next_obs, batch.done, noise[0], alpha)
        agent.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        agent.critic_optimizer.step()
        frozen = [p.detach() for p in agent.critic.parameters()]
        actor_loss, logp = actor_loss_fn(batch.obs, noise[1], alpha, frozen)
        _actor_alpha_target_steps(agent, actor_loss, logp)

    return update


# ---------------------------------------------------------------------------------------------
# The components
# ---------------------------------------------------------------------------------------------


def hopper_like_states(n: int, generator: Any) -> Any:
    """`n x 11` observations near Hopper's healthy start (height 1.25, small angles and velocities)."""
    import torch

    obs = 0.05 * torch.randn(n, OBS, generator=generator)
    obs[:, 0] += 1.25
    return obs


def pranz24_sac() -> Any:
    """mbrl-lib's vendored pranz24 SAC with our SAC's sizes and settings."""
    import gymnasium as gym
    import numpy as np
    from mbrl.third_party.pytorch_sac_pranz24.sac import SAC as PranzSAC

    args = types.SimpleNamespace(gamma=0.99, tau=5e-3, alpha=0.2, policy="Gaussian", target_update_interval=1,
                                 automatic_entropy_tuning=True, hidden_size=256, lr=3e-4, device="cpu",
                                 target_entropy=-1)
    return PranzSAC(OBS, gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32), args)


def mbrl_gaussian_mlp(learn_logvar_bounds: bool = True) -> Any:
    from mbrl.models import GaussianMLP

    return GaussianMLP(in_size=OBS + ACT, out_size=OBS + 1, device="cpu", num_layers=4, ensemble_size=7,
                       hid_size=200, deterministic=False, propagation_method="random_model",
                       learn_logvar_bounds=learn_logvar_bounds, activation_fn_cfg={"_target_": "torch.nn.SiLU"})


def check_same_update(reference: Any, candidate: Callable[[Any, Any], object], agent: Any, batch: Any) -> None:
    """One update of `candidate` on `agent` (a copy of `reference`) leaves the same actor as ours."""
    import torch

    torch.manual_seed(0)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    reference.update(batch, [g1])
    candidate(batch, [g2])
    ours_out = reference.actor.mean_action(batch.obs)
    theirs_out = agent.actor.mean_action(batch.obs)
    if not torch.allclose(ours_out, theirs_out, atol=1e-4, rtol=1e-3):
        raise AssertionError("a SAC variant diverged from mbpo_cli.agents.sac.SAC.update")


def build_sac(variants: bool) -> Component:
    import numpy as np
    import torch
    from mbrl.types import TransitionBatch

    from mbpo_cli.agents.sac import SAC
    from mbpo_cli.config.load import resolve_config
    from mbpo_cli.nn.batch import Batch

    cfg = resolve_config(preset="hopper")
    data_gen = torch.Generator().manual_seed(0)
    obs = hopper_like_states(SAC_BATCH, data_gen)
    act = torch.rand(SAC_BATCH, ACT, generator=data_gen) * 2 - 1
    next_obs = obs + 0.01 * torch.randn(SAC_BATCH, OBS, generator=data_gen)
    reward = torch.randn(SAC_BATCH, generator=data_gen)
    done = (torch.rand(SAC_BATCH, generator=data_gen) < 0.02).float()
    batch = Batch(*(t.unsqueeze(0) for t in (obs, act, reward, next_obs, done)))  # a pack of one seed

    torch.manual_seed(0)
    ours = SAC(OBS, ACT, cfg.sac)
    gen = torch.Generator().manual_seed(0)
    pranz = pranz24_sac()
    arrays = TransitionBatch(obs.numpy(), act.numpy(), next_obs.numpy(), reward.numpy(), (1.0 - done).numpy(),
                             np.zeros(SAC_BATCH, dtype=bool))
    memory = types.SimpleNamespace(sample=lambda batch_size: arrays)
    updates = itertools.count(1)
    contenders = [
        Contender("ours", lambda: ours.update(batch, [gen]), "ours"),
        Contender("mbrl", lambda: pranz.update_parameters(memory, SAC_BATCH, next(updates)), "mbrl"),
    ]
    notes = []
    if variants:
        contenders += sac_variants(cfg, batch, ours)
        notes.append("each nn.Linear variant was checked to leave the same actor as ours after one update")
    return Component("sac_update", "one SAC update (critics, actor, temperature, target) on a batch of 256",
                     contenders, rounds=30, block=10, warmup=30, notes=notes)


def sac_variants(cfg: Any, batch: Any, ours: Any) -> list[Contender]:
    import torch

    from mbpo_cli.agents.sac import SAC

    out: list[Contender] = []
    for label, actor, critic in (("ours: nn.Linear actor", True, False), ("ours: nn.Linear twin critic", False, True),
                                 ("ours: nn.Linear actor + critic", True, True)):
        torch.manual_seed(0)
        reference = SAC(OBS, ACT, cfg.sac)
        agent = variant_agent(cfg.sac, actor, critic)
        check_same_update(reference, agent.update, agent, batch)
        gen = torch.Generator().manual_seed(0)
        out.append(Contender(label, lambda a=agent, g=gen: a.update(batch, [g]), "ours"))

    torch.manual_seed(0)
    reference = SAC(OBS, ACT, cfg.sac)
    agent = variant_agent(cfg.sac, True, False)
    fused = one_pass_actor_update(agent)
    gen = torch.Generator().manual_seed(0)
    out.append(Contender("ours: nn.Linear actor, one actor pass over obs+next_obs", lambda: fused(batch, [gen]),
                         "ours"))

    agent_c = variant_agent(cfg.sac, False, False)
    compiled = compiled_loss_update(agent_c)
    gen_c = torch.Generator().manual_seed(0)
    out.append(Contender("ours: torch.compile on both losses", lambda: compiled(batch, [gen_c]), "ours"))

    gen_b = torch.Generator().manual_seed(0)
    out.append(Contender("ours: bf16 matmul (oneDNN fp32_precision=bf16)",
                         under_bf16(lambda: ours.update(batch, [gen_b])), "ours"))
    agent_lb = variant_agent(cfg.sac, True, True)
    gen_lb = torch.Generator().manual_seed(0)
    out.append(Contender("ours: nn.Linear actor + critic, bf16 matmul",
                         under_bf16(lambda: agent_lb.update(batch, [gen_lb])), "ours"))
    return out


def build_model(variants: bool) -> Component:
    import torch

    from mbpo_cli.config.load import resolve_config
    from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer

    cfg = resolve_config(preset="hopper")
    e, b = cfg.model.ensemble_size, cfg.model.batch_size
    data_gen = torch.Generator().manual_seed(0)
    x = torch.randn(e, b, OBS + ACT, generator=data_gen)
    y = 0.1 * torch.randn(e, b, OBS + 1, generator=data_gen)

    torch.manual_seed(0)
    ours = GaussianEnsemble(OBS, ACT, cfg.model)
    ours_opt = make_model_optimizer(ours)

    def ours_step(model: Any = ours, optimizer: Any = ours_opt) -> None:
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    theirs = mbrl_gaussian_mlp()
    # mbrl-lib's ModelTrainer: Adam(lr, weight_decay) (mbpo_hopper: model_lr 1e-3, model_wd 1e-5).
    theirs_opt = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=1e-5)
    y_theirs = torch.cat([y[..., 1:], y[..., :1]], dim=-1)  # mbrl-lib puts the reward last

    contenders = [
        Contender("ours", ours_step, "ours"),
        Contender("mbrl", lambda: theirs.update(x, theirs_opt, y_theirs), "mbrl"),
    ]
    if variants:
        contenders += model_variants(cfg, x, y, ours_step, theirs, theirs_opt, y_theirs)
    return Component("model_minibatch", "one ensemble minibatch (7 x 256): loss, backward, Adam step",
                     contenders, rounds=30, block=5, warmup=20)


def model_variants(cfg: Any, x: Any, y: Any, ours_step: Callable[..., None], theirs: Any, theirs_opt: Any,
                   y_theirs: Any) -> list[Contender]:
    import torch

    from mbpo_cli.models.ensemble import GaussianEnsemble

    out: list[Contender] = []
    torch.manual_seed(0)
    plain = GaussianEnsemble(OBS, ACT, cfg.model)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=cfg.model.lr)
    out.append(Contender("ours: Adam, not fused", lambda: ours_step(plain, plain_opt), "ours"))
    torch.manual_seed(0)
    fused = GaussianEnsemble(OBS, ACT, cfg.model)
    fused_opt = torch.optim.Adam(fused.parameters(), lr=cfg.model.lr, fused=True)
    out.append(Contender("ours: Adam(fused=True)", lambda: ours_step(fused, fused_opt), "ours"))

    torch.manual_seed(0)
    no_decay = GaussianEnsemble(OBS, ACT, cfg.model)
    no_decay.loss = types.MethodType(_loss_without_decay, no_decay)  # type: ignore[method-assign]
    no_decay_opt = torch.optim.Adam(no_decay.parameters(), lr=cfg.model.lr, weight_decay=1e-5, fused=True)
    out.append(Contender("ours: one Adam weight_decay 1e-5 like mbrl-lib (no decay terms in the loss)",
                         lambda: ours_step(no_decay, no_decay_opt), "ours"))

    torch.manual_seed(0)
    grouped = GaussianEnsemble(OBS, ACT, cfg.model)
    grouped.loss = types.MethodType(_loss_without_decay, grouped)  # type: ignore[method-assign]
    grouped_opt = decay_in_adam(grouped, cfg.model.lr, cfg.model.weight_decay)
    check_same_model_step(cfg, x, y, grouped, grouped_opt, ours_step)
    out.append(Contender("ours: per-layer L2 as fused-Adam weight_decay groups (same update)",
                         lambda: ours_step(grouped, grouped_opt), "ours"))

    torch.manual_seed(0)
    compiled = GaussianEnsemble(OBS, ACT, cfg.model)
    compiled_opt = torch.optim.Adam(compiled.parameters(), lr=cfg.model.lr, fused=True)
    compiled.loss = torch.compile(compiled.loss, dynamic=False)  # type: ignore[method-assign]
    out.append(Contender("ours: torch.compile(model.loss)", lambda: ours_step(compiled, compiled_opt), "ours"))

    torch.manual_seed(0)
    both = GaussianEnsemble(OBS, ACT, cfg.model)
    both.loss = torch.compile(types.MethodType(_loss_without_decay, both), dynamic=False)  # type: ignore[method-assign]
    both_opt = decay_in_adam(both, cfg.model.lr, cfg.model.weight_decay)
    out.append(Contender("ours: L2 in fused-Adam groups + torch.compile(loss)", lambda: ours_step(both, both_opt),
                         "ours"))

    out.append(Contender("ours: bf16 matmul", under_bf16(ours_step), "ours"))
    out.append(Contender("context: mbrl with bf16 matmul",
                         under_bf16(lambda: theirs.update(x, theirs_opt, y_theirs)), "context"))
    return out


def decay_in_adam(model: Any, lr: float, coefficients: tuple[float, ...]) -> Any:
    """Fused Adam whose per-layer weight_decay adds `c * w` to each weight's gradient.

    That is the gradient of the engine's `c * 0.5 * ||w||^2` loss terms, so the update is the same.
    """
    import torch

    weights = list(model.net.weights)
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    groups = [{"params": [w], "weight_decay": c} for w, c in zip(weights, coefficients, strict=True)]
    groups.append({"params": others, "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=lr, fused=True)


def check_same_model_step(cfg: Any, x: Any, y: Any, candidate: Any, optimizer: Any,
                          step: Callable[..., None]) -> None:
    """One step of `candidate` with `optimizer` leaves the same weights as the engine's step."""
    import copy

    import torch

    from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer

    torch.manual_seed(0)
    reference = GaussianEnsemble(OBS, ACT, cfg.model)
    step(reference, make_model_optimizer(reference))
    probe = copy.deepcopy(candidate)
    probe_opt = decay_in_adam(probe, cfg.model.lr, cfg.model.weight_decay)
    step(probe, probe_opt)
    for a, b in zip(reference.parameters(), probe.parameters(), strict=True):
        if not torch.allclose(a, b, atol=1e-6, rtol=1e-4):
            raise AssertionError("the Adam weight_decay variant diverged from the engine's model step")


def _loss_without_decay(self: Any, x: Any, y: Any) -> Any:
    import torch

    mean, logvar = self(x)
    fit = ((mean - y).pow(2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
    return fit + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())


def build_rollout(variants: bool, states: int) -> Component:
    import gymnasium as gym
    import numpy as np
    import torch
    from mbrl.env import termination_fns
    from mbrl.models import ModelEnv, OneDTransitionRewardModel
    from mbrl.planning.sac_wrapper import SACAgent
    from mbrl.types import TransitionBatch
    from mbrl.util.replay_buffer import ReplayBuffer as MbrlBuffer

    from mbpo_cli.agents.sac import SAC
    from mbpo_cli.config.load import resolve_config
    from mbpo_cli.engine.buffer import ReplayBuffer
    from mbpo_cli.engine.model_env import ModelEnv as OurModelEnv
    from mbpo_cli.engine.rollout import branched_rollout
    from mbpo_cli.models.ensemble import GaussianEnsemble
    from mbpo_cli.models.termination import known as termination

    cfg = resolve_config(preset="hopper")
    data_gen = torch.Generator().manual_seed(0)
    obs = hopper_like_states(states, data_gen)
    act = torch.rand(states, ACT, generator=data_gen) * 2 - 1

    torch.manual_seed(0)
    model = GaussianEnsemble(OBS, ACT, cfg.model)
    model.fit_normalizer(torch.cat([obs, act], dim=-1).unsqueeze(0))
    agent = SAC(OBS, ACT, cfg.sac)
    sink = ReplayBuffer(states, OBS, ACT, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    our_env = OurModelEnv(model, model.elites[0], termination.hopper)

    def ours(agent: Any = agent) -> None:
        sink.ptr = sink.size = 0
        branched_rollout(our_env, agent, obs, 1, sink, gen)

    obs_np, act_np = obs.numpy(), act.numpy()
    gaussian_mlp = mbrl_gaussian_mlp()
    dynamics = OneDTransitionRewardModel(gaussian_mlp, target_is_delta=True, normalize=True,
                                         normalize_double_precision=True, learned_rewards=True,
                                         num_elites=cfg.model.elites)
    zeros = np.zeros(states, dtype=np.float32)
    dynamics.update_normalizer(TransitionBatch(obs_np, act_np, obs_np, zeros, zeros.astype(bool), zeros.astype(bool)))
    dynamics.set_elite(list(range(cfg.model.elites)))  # ModelTrainer sets the 5 best after each training
    env_like = types.SimpleNamespace(observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float64),
                                     action_space=gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32))
    model_env = ModelEnv(env_like, dynamics, termination_fns.hopper, generator=torch.Generator().manual_seed(0))
    sac_agent = SACAgent(pranz24_sac())
    sac_buffer = MbrlBuffer(states, (OBS,), (ACT,))

    def theirs() -> None:
        # mbrl.algorithms.mbpo.rollout_model_and_populate_sac_buffer, rollout_horizon=1.
        sac_buffer.cur_idx = sac_buffer.num_stored = 0
        model_state = model_env.reset(initial_obs_batch=obs_np, return_as_np=True)
        accum_dones = np.zeros(obs_np.shape[0], dtype=bool)
        action = sac_agent.act(obs_np, sample=True, batched=True)
        pred_next_obs, pred_rewards, pred_dones, model_state = model_env.step(action, model_state, sample=True)
        truncateds = np.zeros_like(pred_dones, dtype=bool)
        sac_buffer.add_batch(obs_np[~accum_dones], action[~accum_dones], pred_next_obs[~accum_dones],
                             pred_rewards[~accum_dones, 0], pred_dones[~accum_dones, 0], truncateds[~accum_dones, 0])

    contenders = [Contender("ours", ours, "ours"), Contender("mbrl", theirs, "mbrl")]
    notes = [f"mbrl-lib's GaussianMLP with 'random_model' propagation and {cfg.model.elites} elites set runs each "
             "state through one randomly assigned elite (shares of N/5), as ours does; it does not run every "
             "member on every state"]
    if variants:
        linear = variant_agent(cfg.sac, True, False)
        contenders.append(Contender("ours: nn.Linear actor", lambda: ours(linear), "ours"))
        contenders.append(Contender("ours: bf16 matmul", under_bf16(ours), "ours"))
        chunk = math.ceil(states / 10)

        def chunked() -> None:
            sink.ptr = sink.size = 0
            for start in range(0, states, chunk):
                branched_rollout(our_env, agent, obs[start : start + chunk], 1, sink, gen)

        contenders.append(Contender(f"ours: in chunks of {chunk:,} states", chunked, "ours"))
        contenders.append(Contender(f"ours: in chunks of {chunk:,} states, bf16 matmul", under_bf16(chunked), "ours"))

        def all_members() -> None:
            with torch.no_grad():
                x = dynamics._get_model_input(obs_np, act_np)
                gaussian_mlp.forward(x.unsqueeze(0).expand(cfg.model.ensemble_size, -1, -1), use_propagation=False)

        contenders.append(Contender("context: mbrl GaussianMLP forward, all 7 members on all states (no policy)",
                                    all_members, "context"))
    return Component("rollout_step", f"one model-rollout step from {states:,} states: policy, model sample, "
                     "termination, buffer write", contenders, rounds=6, block=1, warmup=1, notes=notes)


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def component_result(component: Component) -> dict[str, Any]:
    ours, theirs = component.get("ours"), component.get("mbrl")
    ratio = theirs.median / ours.median
    target = TARGETS[component.name]
    return {
        "component": component.name,
        "what": component.what,
        "ours_median_ms": round(ours.median, 4),
        "mbrl_median_ms": round(theirs.median, 4),
        "ratio": round(ratio, 3),
        "target": target,
        "met": ratio >= target,
        "contenders": [
            {**c.summary(), "mbrl_over_this": round(theirs.median / c.median, 3)} for c in component.contenders
        ],
        "notes": component.notes,
    }


def print_table(results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    print(f"torch {meta['torch']}, mbrl {meta['mbrl']}, {meta['threads']} threads, "
          f"load average {meta['loadavg_before'][0]:.2f} before / {meta['loadavg_after'][0]:.2f} after")
    header = f"{'component':<17} {'ours ms':>11} {'mbrl ms':>11} {'mbrl/ours':>10} {'target':>7}  met?"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['component']:<17} {r['ours_median_ms']:>11.3f} {r['mbrl_median_ms']:>11.3f} {r['ratio']:>9.2f}x "
              f"{r['target']:>6.1f}x  {'yes' if r['met'] else 'NO'}")
    if any(len(r["contenders"]) > 2 for r in results):
        print("\nall contenders (median ms; mbrl/this = mbrl-lib as shipped over this row):")
        for r in results:
            print(f"  {r['component']}")
            for c in r["contenders"]:
                print(f"    {c['label']:<78} {c['median_ms']:>11.3f} {c['mbrl_over_this']:>7.2f}x")
    for r in results:
        for note in r["notes"]:
            print(f"note ({r['component']}): {note}")


def profile(component: Component, calls: int) -> None:
    """torch.profiler tables (self CPU time) of ours and mbrl-lib's side."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for label in ("ours", "mbrl"):
        contender = component.get(label)
        for _ in range(component.warmup):
            contender.fn()
        with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(calls):
                contender.fn()
        print(f"\n=== {component.name}: {label}, {calls} calls ===")
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25,
                                                                  max_name_column_width=40,
                                                                  max_shapes_column_width=60))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", default="sac_update,model_minibatch,rollout_step",
                        help="comma-separated subset of sac_update, model_minibatch, rollout_step")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--rollout-states", type=int, default=100_000, help="start states of the rollout step")
    parser.add_argument("--rounds-scale", type=float, default=1.0, help="multiply every component's rounds")
    parser.add_argument("--variants", action="store_true", help="also time alternative implementations")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables instead of timing")
    parser.add_argument("--mallopt", action="store_true",
                        help="keep freed memory in the process (glibc mallopt: no trimming, mmap only above 32 MiB), "
                             "for both sides")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="write the results as JSON to PATH (default: stdout, no table)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("mbrl") is None:
        print("skipped: mbrl-lib is not importable here (see benchmarks/README.md for the scratch venv)")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.mallopt:
        keep_freed_memory()
    builders: dict[str, Callable[[], Component]] = {
        "sac_update": lambda: build_sac(args.variants),
        "model_minibatch": lambda: build_model(args.variants),
        "rollout_step": lambda: build_rollout(args.variants, args.rollout_states),
    }
    names = [n.strip() for n in args.components.split(",") if n.strip()]
    unknown = [n for n in names if n not in builders]
    if unknown:
        print(f"unknown component(s): {', '.join(unknown)} (known: {', '.join(builders)})", file=sys.stderr)
        return 2
    meta: dict[str, Any] = {
        "torch": torch.__version__, "mbrl": importlib.metadata.version("mbrl"), "threads": args.threads,
        "python": platform.python_version(), "cpu": _cpu_name(), "cores": os.cpu_count(),
        "rollout_states": args.rollout_states, "variants": args.variants, "mallopt": args.mallopt,
        "loadavg_before": os.getloadavg(),
    }
    spin_up(2.0)
    components = []
    for name in names:
        component = builders[name]()
        component.rounds = max(2, round(component.rounds * args.rounds_scale))
        if args.profile:
            profile(component, calls=3 if name == "rollout_step" else 50)
            continue
        run_interleaved(component)
        components.append(component)
    if args.profile:
        return 0
    meta["loadavg_after"] = os.getloadavg()
    results = [component_result(c) for c in components]
    document = {"meta": meta, "results": results}
    if args.json is None or args.json != "-":
        print_table(results, meta)
    if args.json == "-":
        print(json.dumps(document, indent=2))
    elif args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
    return 0


def keep_freed_memory() -> None:
    """glibc: never trim the heap and serve blocks up to 32 MiB from it.

    By default glibc hands large freed blocks back to the kernel, so the next step's tensors of the
    same size fault their pages in again (expensive in a VM); this keeps them for reuse.
    """
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
