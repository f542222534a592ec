"""The probabilistic ensemble must fit a known nonlinear system and know where it has not seen data."""

import math

import pytest
import torch

from mbpo_cli.config.schema import ModelConfig
from mbpo_cli.models.ensemble import GaussianEnsemble, fit_ensemble, make_model_optimizer, model_targets

DT = 0.05


def pendulum_step(theta: torch.Tensor, omega: torch.Tensor, torque: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A damped pendulum, semi-implicit Euler: reward -theta^2, next (theta, omega)."""
    omega_next = omega + DT * (-9.81 * torch.sin(theta) - 0.3 * omega + torque)
    theta_next = theta + DT * omega_next
    return -(theta**2), theta_next, omega_next


def pendulum_data(n: int, generator: torch.Generator, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    theta = (torch.rand(n, generator=generator) * 2 - 1) * math.pi / 2 * scale
    omega = (torch.rand(n, generator=generator) * 2 - 1) * 2.0 * scale
    torque = (torch.rand(n, generator=generator) * 2 - 1) * 2.0
    reward, theta_next, omega_next = pendulum_step(theta, omega, torque)
    obs = torch.stack([theta, omega], dim=1)
    next_obs = torch.stack([theta_next, omega_next], dim=1)
    return obs, torque.unsqueeze(1), reward, next_obs


def fit(deterministic: bool) -> tuple[GaussianEnsemble, list[float]]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    obs, act, reward, next_obs = pendulum_data(2000, gen)
    config = ModelConfig(hidden=64, layers=3, weight_decay=(2.5e-5, 5e-5, 7.5e-5, 1e-4), max_epochs=60,
                         deterministic=deterministic)
    model = GaussianEnsemble(2, 1, config)
    result = fit_ensemble(model, make_model_optimizer(model), torch.cat([obs, act], 1).unsqueeze(0),
                          model_targets(obs, reward, next_obs).unsqueeze(0), [gen])
    return model, result[0].holdout_losses


@pytest.fixture(scope="session")
def probabilistic() -> tuple[GaussianEnsemble, list[float]]:
    return fit(deterministic=False)


def test_ensemble_fits_damped_pendulum(probabilistic: tuple[GaussianEnsemble, list[float]]) -> None:
    model, _ = probabilistic
    gen = torch.Generator().manual_seed(1)
    obs, act, reward, next_obs = pendulum_data(2000, gen)
    targets = model_targets(obs, reward, next_obs)
    # The targets' variance is about 0.35 (reward) and 1e-2 (state changes); a holdout MSE below 2e-3
    # means the members explain over 99% of it: they learned the dynamics, not the mean.
    mse = model.holdout_mse(model.normalize(torch.cat([obs, act], 1).unsqueeze(0)), targets.unsqueeze(0))[0]
    assert float(mse[model.elites[0]].mean()) < 2e-3, mse
    assert float(targets.var(dim=0).mean()) > 0.05


def test_elites_are_lowest_holdout_losses(probabilistic: tuple[GaussianEnsemble, list[float]]) -> None:
    model, losses = probabilistic
    ranked = sorted(range(len(losses)), key=lambda i: losses[i])
    assert model.elites.tolist() == [ranked[: model.config.elites]]
    assert len(losses) == model.config.ensemble_size


def test_disagreement_grows_away_from_data(probabilistic: tuple[GaussianEnsemble, list[float]]) -> None:
    model, _ = probabilistic
    gen = torch.Generator().manual_seed(2)
    inside_obs, inside_act, _, _ = pendulum_data(1000, gen, scale=1.0)
    outside_obs, outside_act, _, _ = pendulum_data(1000, gen, scale=4.0)
    outside = (outside_obs.abs() > torch.tensor([math.pi / 2, 2.0])).any(dim=1)

    def spread(obs: torch.Tensor, act: torch.Tensor) -> float:
        x = model.normalize(torch.cat([obs, act], 1).unsqueeze(0)).expand(model.config.ensemble_size, -1, -1)
        with torch.no_grad():
            mean, _ = model(x)
        return float(mean.std(dim=0).mean())

    assert spread(outside_obs[outside], outside_act[outside]) > 3 * spread(inside_obs, inside_act)


def test_deterministic_model_fits_and_predicts_mean() -> None:
    model, _ = fit(deterministic=True)
    gen = torch.Generator().manual_seed(3)
    obs, act, reward, next_obs = pendulum_data(500, gen)
    members = model.elites
    r1, n1 = model.sample(obs[None], act[None], [torch.Generator().manual_seed(0)], members)
    r2, n2 = model.sample(obs[None], act[None], [torch.Generator().manual_seed(1)], members)
    r1, n1, r2, n2 = r1[0], n1[0], r2[0], n2[0]
    # No sampling noise: only the member assignment differs between the two calls.
    assert torch.allclose(n1, n2, atol=0.05) and torch.allclose(r1, r2, atol=0.05)
    assert float((n1 - next_obs).pow(2).mean()) < 2e-3 and float((r1 - reward).pow(2).mean()) < 2e-3


def test_sample_uses_one_member_per_sample_and_keeps_order(
    probabilistic: tuple[GaussianEnsemble, list[float]],
) -> None:
    model, _ = probabilistic
    gen = torch.Generator().manual_seed(4)
    obs, act, _, next_obs = pendulum_data(1001, gen)
    reward, predicted = model.sample(obs[None], act[None], [gen], model.elites)
    assert predicted.shape == (1, *next_obs.shape) and reward.shape == (1, 1001)
    # Samples come back in input order: the prediction tracks each sample's own next state.
    assert float((predicted - next_obs).abs().mean()) < 0.05


def test_sample_handles_fewer_states_than_half_the_members(
    probabilistic: tuple[GaussianEnsemble, list[float]],
) -> None:
    """A rollout whose branches have nearly all terminated samples 1 or 2 states with 5 elites (it raised: the
    padding to M equal shares repeated the permutation only once)."""
    model, _ = probabilistic
    gen = torch.Generator().manual_seed(5)
    obs, act, _, next_obs = pendulum_data(2, gen)
    for n in (1, 2):
        reward, predicted = model.sample(obs[None, :n], act[None, :n], [gen], model.elites)
        assert predicted.shape == (1, n, obs.shape[1]) and reward.shape == (1, n)
        assert float((predicted - next_obs[:n]).abs().mean()) < 0.1
