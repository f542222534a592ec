"""DHMBPO's dynamics model (mbpo_cli.models.dynamics, mbpo_cli.models.dynamics_fit): its model step, its fit of a
known system, z-test early stopping and the labels of real data."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from scipy import stats

from mbpo_cli.config.schema import DynamicsConfig
from mbpo_cli.models.dynamics import DynamicsEnsemble, raw_targets
from mbpo_cli.models.dynamics_fit import TransitionLabels, epoch_limits, fit_dynamics, p_value
from mbpo_cli.nn.batch import Batch

SMALL = DynamicsConfig(members=4, hidden=48, batch_size=256, patience_scale=10.0, max_epochs_ratio=20.0)
NOISE = 0.02
"""The known system's noise std on every observation dimension."""


def known_system(n: int, seed: int) -> Batch:
    """Transitions of s' = s + 0.1 (A s + B a) + N(0, NOISE^2) with reward -|s|^2 + a_0, from random states and
    actions."""
    g = torch.Generator().manual_seed(seed)
    a_mat = torch.tensor([[0.0, 1.0, 0.0], [-1.0, -0.2, 0.5], [0.3, 0.0, -0.5]])
    b_mat = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    obs = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.0, 1.0, -2.0])
    act = torch.rand(n, 2, generator=g) * 2 - 1
    next_obs = obs + 0.1 * (obs @ a_mat.T + act @ b_mat.T) + NOISE * torch.randn(n, 3, generator=g)
    reward = -(obs**2).sum(dim=1) + act[:, 0]
    return Batch(obs, act, reward, next_obs, torch.zeros(n))


@pytest.fixture(autouse=True)
def one_thread() -> None:
    """One torch thread (restored by the suite's conftest)."""
    torch.set_num_threads(1)


def labeled(n: int, members: int, seed: int = 0) -> TransitionLabels:
    labels = TransitionLabels.empty(members, torch.device("cpu"))
    labels.extend(n, n, 0.2, "exponential", torch.Generator().manual_seed(seed))
    return labels


def test_the_model_fits_a_known_system() -> None:
    """After a retrain, the ensemble's mean one-step prediction explains the held-out reward and observation change
    up to the system's noise (about 1 to 3% of the change's variance here), and its learned noise scale, which
    starts at the targets' std (5 to 10 times the noise), is near the system's."""
    torch.manual_seed(0)
    model = DynamicsEnsemble(3, 2, SMALL)
    data = known_system(2000, seed=1)
    fit = fit_dynamics(model, data, labeled(2000, 4), 1.0, torch.Generator().manual_seed(2))
    assert fit.epochs > fit.patience and fit.best_epoch > 0

    test = known_system(1000, seed=3)
    with torch.no_grad():
        x = model.inputs(test.obs, test.act)
        mean = model.net(x.expand(4, -1, -1)).mean(dim=0) * model.out_std + model.out_mean
    truth = raw_targets(test.obs, test.reward, test.next_obs)
    unexplained = ((mean - truth).square().mean(dim=0) / truth.var(dim=0)).tolist()
    assert unexplained[0] < 0.02, unexplained  # the reward (noiseless)
    assert max(unexplained[1:]) < 0.05, unexplained  # the change, up to its noise
    noise_scale = (model.log_noise.detach().exp().mean(dim=0)[0] * model.out_std)[1:]
    assert all(NOISE / 2 < s < 3 * NOISE for s in noise_scale.tolist()), noise_scale


def test_step_serves_each_block_by_its_member_with_gradients_to_inputs_only() -> None:
    torch.manual_seed(0)
    model = DynamicsEnsemble(3, 2, SMALL)
    model.set_normalizers(torch.randn(50, 3) * 2 + 1, torch.randn(50, 4) * 3)
    obs = torch.randn(8, 3, requires_grad=True)
    act = torch.rand(8, 2, requires_grad=True)
    noise = torch.randn(8, 3)
    order = torch.tensor([2, 0, 3, 1])
    reward, next_obs = model.step(obs, act, noise, order)
    reward.sum().add(next_obs.sum()).backward()
    assert obs.grad is not None and act.grad is not None and act.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        x = torch.cat([obs, act], dim=-1)
        for block, member in enumerate(order.tolist()):
            rows = slice(2 * block, 2 * block + 2)
            mean = model.net(x[rows].unsqueeze(0), members=torch.tensor([member]))[0]
            scale = model.log_noise[member].exp()
            out = (mean + scale * torch.cat([torch.zeros(2, 1), noise[rows]], dim=1)) * model.out_std + model.out_mean
            assert torch.allclose(reward[rows], out[:, 0], atol=1e-5)
            assert torch.allclose(next_obs[rows], obs[rows] + out[:, 1:] / model.obs_std, atol=1e-5)


def test_a_retrain_that_only_hurts_keeps_the_starting_weights() -> None:
    """With a learning rate that wrecks the model, no epoch beats the starting weights: the patience runs out and
    the retrain restores them (the best snapshot may be the pre-retrain model)."""
    torch.manual_seed(0)
    model = DynamicsEnsemble(3, 2, dataclasses.replace(SMALL, lr=50.0, patience_scale=1.0))
    start = [p.detach().clone() for p in model.parameters()]
    fit = fit_dynamics(model, known_system(600, seed=1), labeled(600, 4), 1.0, torch.Generator().manual_seed(3))
    assert fit.best_epoch == 0 and fit.epochs == fit.patience + 1
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))


def test_epoch_limits_follow_the_observation_size() -> None:
    """floor(50 ln(|S| + 1)) epochs of patience, five times that at most, both five times more in the first burst."""
    assert [epoch_limits(d, 50.0, 5.0, 1.0)[0] for d in (11, 17, 27, 45)] == [124, 144, 166, 191]
    assert epoch_limits(11, 50.0, 5.0, 1.0) == (124, 621)
    assert epoch_limits(11, 50.0, 5.0, 5.0) == (621, 3106)


def test_p_value_is_a_paired_one_sided_test() -> None:
    g = torch.Generator().manual_seed(0)
    best = torch.rand(500, generator=g)
    better = best - 0.01 + 0.05 * torch.randn(500, generator=g)
    t = stats.ttest_rel(better.numpy(), best.numpy(), alternative="less").pvalue
    assert p_value(better, best) == pytest.approx(t)
    assert p_value(better, best) < 0.1 and p_value(best, better) > 0.9
    big_best = torch.rand(5000, generator=g)
    big = big_best + 0.001 + 0.05 * torch.randn(5000, generator=g)
    diff = (big - big_best).double()
    z = float(diff.mean() / diff.std() * math.sqrt(5000))
    assert p_value(big, big_best) == pytest.approx(stats.norm.cdf(z), rel=1e-6)


def test_labels_are_drawn_once_per_transition_and_follow_the_buffer() -> None:
    g = torch.Generator().manual_seed(0)
    labels = TransitionLabels.empty(3, torch.device("cpu"))
    labels.extend(1000, 1000, 0.2, "exponential", g)
    first = labels.weights.clone()
    labels.extend(1500, 1200, 0.2, "exponential", g)  # 500 more, a buffer of 1,200
    assert labels.weights.shape == (1200, 3) and labels.validation.shape == (1200,) and labels.seen == 1500
    assert torch.equal(labels.weights[:700], first[300:])  # old labels kept, aligned oldest first
    assert 0.15 < labels.validation.float().mean() < 0.25 and abs(labels.weights.mean() - 1) < 0.1
    labels.extend(1600, 1300, 0.2, "poisson", g)
    assert torch.equal(labels.weights[-100:], labels.weights[-100:].round())
