"""SAC's maths checked against independent computations: the tanh-Gaussian log-probability against
`torch.distributions`, the twin-minimum soft target worked out by hand on linear networks, and the direction of
the temperature's update.

Networks with `layers: 0` are linear (`BatchedMLP` with no hidden layer), so every value they give can be written
down: the actor's mean and log-std, and each critic's Q, are `w . input + b` with weights set by the test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from mbpo_cli.agents.sac import SAC, Actor
from mbpo_cli.config.schema import SACConfig
from mbpo_cli.nn.batch import Batch


def set_linear(net: torch.nn.Module, weight: list[list[list[float]]], bias: list[list[float]]) -> None:
    """Set a one-layer `BatchedMLP`'s weights `E x in x out` and biases `E x out`."""
    with torch.no_grad():
        net.weights[0].copy_(torch.tensor(weight))
        net.biases[0].copy_(torch.tensor(bias).unsqueeze(1))


def constant_actor(mean: list[float], log_std: list[float]) -> Actor:
    """An actor whose Gaussian is `N(mean, exp(log_std)^2)` whatever the observation (one obs dim)."""
    actor = Actor(obs_dim=1, act_dim=len(mean), hidden=8, layers=0)
    set_linear(actor.net, [[[0.0] * (2 * len(mean))]], [[*mean, *log_std]])
    return actor


# ---------------------------------------------------------------------------------------------
# The tanh-Gaussian log-probability
# ---------------------------------------------------------------------------------------------


def test_log_probability_is_the_tanh_gaussian_density_of_torch_distributions() -> None:
    mean, log_std = [0.3, -0.8, 1.1], [-0.5, 0.2, -1.5]
    actor = constant_actor(mean, log_std)
    noise = torch.tensor([[0.0, 0.0, 0.0], [1.2, -0.7, 0.4], [-1.5, 0.9, -2.0], [0.5, 1.3, 0.1]])
    obs = torch.zeros(noise.shape[0], 1)
    action, logp = actor.sample(obs[None], noise=noise[None])
    action, logp = action[0], logp[0]

    base = Normal(torch.tensor(mean), torch.tensor(log_std).exp())
    pre_tanh = base.loc + base.scale * noise
    assert torch.allclose(action, torch.tanh(pre_tanh))
    squashed = TransformedDistribution(base, [TanhTransform()])
    assert torch.allclose(logp, squashed.log_prob(action).sum(dim=-1), atol=1e-4)
    # by hand: the Gaussian's log-density of the pre-tanh sample, less log(1 - tanh(u)^2) per dimension
    by_hand = (base.log_prob(pre_tanh) - torch.log(1 - torch.tanh(pre_tanh) ** 2)).sum(dim=-1)
    assert torch.allclose(logp, by_hand, atol=1e-5)
    # the correction matters: without it the log-probability is the Gaussian's alone
    assert not torch.allclose(logp, base.log_prob(pre_tanh).sum(dim=-1), atol=1e-2)


def test_log_probability_stays_exact_where_tanh_saturates() -> None:
    """At |u| = 12 the naive log(1 - tanh(u)^2) is log(0) in float32; the actor's stable form is torch's."""
    actor = constant_actor([12.0, -12.0], [-3.0, -3.0])
    noise = torch.zeros(1, 2)
    _, logp = actor.sample(torch.zeros(1, 1, 1), noise=noise[None])
    u = torch.tensor([12.0, -12.0])
    base = Normal(u, torch.full((2,), math.exp(-3.0)))
    expected = (base.log_prob(u) - TanhTransform().log_abs_det_jacobian(u, torch.tanh(u))).sum()
    assert torch.isfinite(logp).all()
    assert logp.item() == pytest.approx(expected.item(), rel=1e-5)
    # each dimension: log N(0) = 3 - log(2 pi) / 2, minus log(1 - tanh(12)^2) = 2 (log 2 - 12 - log1p(e^-24))
    per_dim = 3.0 - 0.5 * math.log(2 * math.pi) - 2.0 * (math.log(2.0) - 12.0 - math.log1p(math.exp(-24.0)))
    assert logp.item() == pytest.approx(2 * per_dim, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# The twin-minimum soft target
# ---------------------------------------------------------------------------------------------


def tiny_sac(init_alpha: float = 0.5, target_entropy: float | None = None) -> SAC:
    """SAC on one obs and one action dimension with linear actor and critics (`layers: 0`)."""
    config = SACConfig(hidden=8, layers=0, init_alpha=init_alpha, target_entropy=target_entropy)
    return SAC(obs_dim=1, act_dim=1, config=config, gamma=0.9)


def test_critic_loss_regresses_on_the_twin_minimum_soft_target_worked_out_by_hand() -> None:
    agent = tiny_sac(init_alpha=0.5)
    # actor: mean = 0.5 s' + 0.1, log std = -0.2 s' - 1.0
    set_linear(agent.actor.net, [[[0.5, -0.2]]], [[0.1, -1.0]])
    # target critics: Q1' = s' + 2a' + 0.5 and Q2' = -s' + a' + 1.0, so member 1 is the minimum where s' > 0
    # (with these actions) and member 0 where s' < 0
    set_linear(agent.critic_target.net, [[[1.0], [2.0]], [[-1.0], [1.0]]], [[0.5], [1.0]])
    # online critics: Q1 = 0.3 s - 0.4 a + 0.2 and Q2 = -0.1 s + 0.6 a - 0.3
    set_linear(agent.critic.net, [[[0.3], [-0.4]], [[-0.1], [0.6]]], [[0.2], [-0.3]])
    s, a = [0.4, -1.0, 0.7], [0.5, -0.3, 0.9]
    r, s2, d = [1.0, -0.5, 2.0], [1.5, -2.0, 0.8], [0.0, 0.0, 1.0]
    eps = [0.3, -1.1, 0.6]
    batch = Batch(torch.tensor(s).unsqueeze(1), torch.tensor(a).unsqueeze(1), torch.tensor(r),
                  torch.tensor(s2).unsqueeze(1), torch.tensor(d))
    batch = Batch(*(t.unsqueeze(0) for t in batch))  # a pack of one seed
    noise = torch.stack([torch.tensor(eps).view(3, 1), torch.zeros(3, 1)]).unsqueeze(0)  # next-state, current-state

    targets, chosen = [], []
    for i in range(3):
        mean, log_std = 0.5 * s2[i] + 0.1, -0.2 * s2[i] - 1.0
        u = mean + math.exp(log_std) * eps[i]
        next_a = math.tanh(u)
        logp = -0.5 * eps[i] ** 2 - log_std - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u) ** 2)
        q1, q2 = s2[i] + 2 * next_a + 0.5, -s2[i] + next_a + 1.0
        chosen.append(0 if q1 < q2 else 1)
        targets.append(r[i] + 0.9 * (1 - d[i]) * (min(q1, q2) - 0.5 * logp))
    assert sorted(set(chosen[:2])) == [0, 1]  # the minimum comes from each member once: a max or one member fails
    q = [[0.3 * s[i] - 0.4 * a[i] + 0.2 for i in range(3)], [-0.1 * s[i] + 0.6 * a[i] - 0.3 for i in range(3)]]
    expected = 0.5 * sum(sum((q[m][i] - targets[i]) ** 2 for i in range(3)) / 3 for m in range(2))

    info = agent.update_with_noise(batch, noise)
    assert info["critic_loss"].item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# The temperature
# ---------------------------------------------------------------------------------------------


def one_update(target_entropy: float) -> tuple[float, float, float]:
    """alpha before and after one update of a fresh agent with `target_entropy`, and the entropy it measured."""
    torch.manual_seed(0)
    agent = SAC(obs_dim=3, act_dim=2, config=SACConfig(hidden=16, target_entropy=target_entropy))
    gen = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(1, 64, 3, generator=gen), torch.rand(1, 64, 2, generator=gen) * 2 - 1,
                  torch.randn(1, 64, generator=gen), torch.randn(1, 64, 3, generator=gen), torch.zeros(1, 64))
    before = agent.log_alpha.exp().item()
    info = agent.update(batch, [gen])
    return before, agent.log_alpha.exp().item(), info["entropy"].item()


def test_temperature_rises_when_the_entropy_is_below_its_target() -> None:
    before, after, entropy = one_update(target_entropy=5.0)
    assert entropy < 5.0
    assert after > before


def test_temperature_falls_when_the_entropy_is_above_its_target() -> None:
    before, after, entropy = one_update(target_entropy=-20.0)
    assert entropy > -20.0
    assert after < before
