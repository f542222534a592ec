"""The model environment: one step of the ensemble with the run's members, termination and reward, as rollouts and
diagnostics take it."""

from collections.abc import Sequence

import torch

from mbpo_cli.config.schema import ModelConfig
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.model_env import ModelEnv
from mbpo_cli.engine.rollout import branched_rollout
from mbpo_cli.models.ensemble import GaussianEnsemble, disagreement

OBS, ACT, N = 3, 2, 10


def _model() -> GaussianEnsemble:
    torch.manual_seed(0)
    return GaussianEnsemble(OBS, ACT, ModelConfig(ensemble_size=3, elites=2, hidden=8, layers=1,
                                                  weight_decay=(1e-5, 1e-5)))


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(N, OBS, generator=gen), torch.rand(N, ACT, generator=gen) * 2 - 1


def _above(next_obs: torch.Tensor) -> torch.Tensor:
    return next_obs[:, 0] > 0.0


def _paid(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return obs[:, 0] + act[:, 0] + next_obs[:, 0]


def test_a_step_samples_the_members_and_applies_termination_and_reward() -> None:
    model, (obs, act) = _model(), _inputs()
    members = torch.tensor([2, 0])
    reward, next_obs = model.sample(obs[None], act[None], [torch.Generator().manual_seed(5)], members[None])
    reward, next_obs = reward[0], next_obs[0]
    step = ModelEnv(model, members, _above).step(obs, act, torch.Generator().manual_seed(5))
    assert torch.equal(step.reward, reward) and torch.equal(step.next_obs, next_obs)
    assert torch.equal(step.done, next_obs[:, 0] > 0.0)
    custom = ModelEnv(model, members, _above, _paid).step(obs, act, torch.Generator().manual_seed(5))
    assert torch.equal(custom.reward, _paid(obs, act, next_obs)) and torch.equal(custom.next_obs, next_obs)


def test_the_mean_step_averages_the_rollout_members() -> None:
    model, (obs, act) = _model(), _inputs()
    members = torch.tensor([1, 2])
    mean, _ = model.predict_members(obs[None], act[None], members[None])
    mean = mean[0]
    step = ModelEnv(model, members, _above).mean_step(obs, act)
    assert torch.allclose(step.reward, mean.mean(dim=0)[:, 0])
    assert torch.allclose(step.next_obs, obs + mean.mean(dim=0)[:, 1:])


def test_a_step_from_predictions_samples_one_random_member_per_state() -> None:
    model, (obs, act) = _model(), _inputs()
    env = ModelEnv(model, torch.tensor([0, 2]), _above)
    predictions = env.predict(obs, act)
    assert predictions.mean.shape == (2, N, 1 + OBS) and predictions.logvar is not None
    assert torch.equal(predictions.disagreement(), disagreement(predictions.mean[..., 1:], predictions.logvar[..., 1:]))
    gen = torch.Generator().manual_seed(3)
    pick = torch.randint(2, (N,), generator=gen)
    rows = torch.arange(N)
    out = predictions.mean[pick, rows]
    out = out + torch.randn(out.shape, generator=gen) * torch.exp(0.5 * predictions.logvar[pick, rows])
    step = env.step_from(predictions, obs, act, torch.Generator().manual_seed(3))
    assert torch.equal(step.reward, out[:, 0]) and torch.equal(step.next_obs, obs + out[:, 1:])


class StillAgent:
    def act(self, obs: torch.Tensor, deterministic: bool,
            generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        return torch.zeros(*obs.shape[:2], ACT)


def test_a_branched_rollout_stops_where_the_env_terminates() -> None:
    model, (obs, _) = _model(), _inputs()
    buffer = ReplayBuffer(100, OBS, ACT, torch.device("cpu"))
    everything = ModelEnv(model, model.elites[0], lambda x: torch.ones(x.shape[0], dtype=torch.bool))
    stats = branched_rollout(everything, StillAgent(), obs, 5, buffer, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    assert (stats.transitions, stats.mean_length, len(buffer)) == (N, 1.0, N)
    assert bool(buffer.data.done[:N].all())
