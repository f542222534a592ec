"""The seed axis through the ensemble and the learned termination: a seed in a pack trains, stops, samples and
classifies as the same seed alone, and a lone model saved before the seed axis still loads."""

import dataclasses
import math
from typing import NamedTuple

import pytest
import torch

from mbpo_cli.config.schema import DoneModelConfig, ModelConfig
from mbpo_cli.models.ensemble import FitResult, GaussianEnsemble, fit_ensemble, make_model_optimizer
from mbpo_cli.models.termination.learned import (
    DoneClassifier,
    DoneFit,
    fit_done_classifier,
    make_done_optimizer,
)
from mbpo_cli.nn.optim import SeedAdam
from mbpo_cli.nn.seeds import seed_optimizer_state, stack_optimizer_states

OBS, ACT, N = 3, 1, 400
CONFIG = ModelConfig(ensemble_size=4, elites=2, hidden=16, layers=2, weight_decay=(1e-5, 1e-5, 1e-5), max_epochs=40,
                     patience=2, batch_size=64)


def _lone(seed: int, config: ModelConfig = CONFIG) -> GaussianEnsemble:
    torch.manual_seed(seed)
    return GaussianEnsemble(OBS, ACT, config)


def _data(seed: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs `N x in` and targets `N x out` of a smooth map plus `noise` (pure noise learns nothing: an early stop)."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(N, OBS + ACT, generator=g)
    y = torch.cat([x[:, :1] * x[:, 1:2], torch.sin(x[:, :OBS])], dim=1)
    return x, y + noise * torch.randn(y.shape, generator=g)


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(100 + s) for s in seeds]


class Fitted(NamedTuple):
    """A fitted ensemble (a pack, or a seed alone), its optimizer, each seed's result and generator."""

    model: GaussianEnsemble
    optimizer: SeedAdam
    results: list[FitResult]
    generators: list[torch.Generator]


def _fit_alone(seed: int, x: torch.Tensor, y: torch.Tensor, config: ModelConfig = CONFIG) -> Fitted:
    model = _lone(seed, config)
    optimizer = make_model_optimizer(model)
    generators = _generators([seed])
    return Fitted(model, optimizer, fit_ensemble(model, optimizer, x[None], y[None], generators), generators)


def _fit_pack(seeds: list[int], data: list[tuple[torch.Tensor, torch.Tensor]], config: ModelConfig = CONFIG
              ) -> Fitted:
    pack = GaussianEnsemble.pack([_lone(s, config) for s in seeds])
    optimizer = make_model_optimizer(pack)
    generators = _generators(seeds)
    results = fit_ensemble(pack, optimizer, torch.stack([x for x, _ in data]), torch.stack([y for _, y in data]),
                           generators)
    return Fitted(pack, optimizer, results, generators)


def _same_as_alone(pack: Fitted, seed: int, alone: Fitted) -> None:
    """Seed `seed` of `pack` has the lone fit's result, weights, buffers, Adam state (moments and step counts) and
    generator state, bit for bit."""
    assert pack.results[seed] == alone.results[0]
    assert _same_state(pack.model.seed(seed).state_dict(), alone.model.state_dict())
    seeds = pack.model.seeds
    moments = seed_optimizer_state(pack.optimizer.state_dict(), seed, seeds)["state"]
    lone_moments = alone.optimizer.state_dict()["state"]
    assert moments.keys() == lone_moments.keys()
    assert all(_same_state(moments[i], lone_moments[i]) for i in lone_moments)
    assert torch.equal(pack.generators[seed].get_state(), alone.generators[0].get_state())


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_pack_holds_each_lone_model_and_gives_it_back() -> None:
    lone = [_lone(s) for s in range(3)]
    pack = GaussianEnsemble.pack(lone)
    assert pack.net.weights[0].shape[0] == 3 * CONFIG.ensemble_size and pack.input_mean.shape == (3, OBS + ACT)
    assert pack.elites.shape == (3, CONFIG.elites) and pack.holdout_losses.shape == (3, CONFIG.ensemble_size)
    assert pack.max_logvar.shape == (3, 1, OBS + 1)
    for s in range(3):
        assert _same_state(pack.seed(s).state_dict(), lone[s].state_dict())


def test_seed_2_of_a_pack_of_4_fits_as_alone() -> None:
    """Each seed of a pack of 4 on its own data: seed 2 runs the epochs, picks the elites and ends with the weights,
    Adam moments and generator state of the same seed fitted alone, bit for bit."""
    data = [_data(s, 0.05) for s in range(4)]
    _same_as_alone(_fit_pack([0, 1, 2, 3], data), 2, _fit_alone(2, *data[2]))


def test_seeds_that_stop_at_different_epochs_each_stop_as_alone() -> None:
    """Seed 0 learns nothing from pure noise and stops early; seed 1 learns a smooth map for longer. Each seed's
    epochs, elites, holdout losses and weights are its lone fit's: the stopped seed stopped changing."""
    data = [(_data(0, 0.0)[0], torch.randn(N, OBS + 1, generator=torch.Generator().manual_seed(7))), _data(1, 0.01)]
    pack = _fit_pack([0, 1], data)
    assert pack.results[0].epochs < pack.results[1].epochs  # the premise: they stop at different epochs
    for s in range(2):
        _same_as_alone(pack, s, _fit_alone(s, *data[s]))


def test_the_same_pack_gives_the_same_numbers() -> None:
    data = [_data(s, 0.05) for s in range(3)]
    first, second = _fit_pack([0, 1, 2], data), _fit_pack([0, 1, 2], data)
    assert first.results == second.results
    assert _same_state(first.model.state_dict(), second.model.state_dict())
    assert _same_state(stack_optimizer_states([first.optimizer.state_dict()])["state"][0],
                       stack_optimizer_states([second.optimizer.state_dict()])["state"][0])
    obs, act = torch.randn(3, 50, OBS), torch.randn(3, 50, ACT)
    samples = [fitted.model.sample(obs, act, _generators([0, 1, 2]), fitted.model.elites) for fitted in (first, second)]
    assert all(torch.equal(a, b) for a, b in zip(*samples, strict=True))


def test_a_seed_in_a_pack_samples_and_predicts_as_alone() -> None:
    """Bit for bit where each seed's share of an elementwise op is a whole number of the CPU's vector blocks (here
    2 members x 20 states x 4 outputs = 160 floats): a lone tensor's last elements otherwise take the scalar loop,
    whose exp rounds differently from the vector one they fall in within a pack."""
    lone = [_lone(s) for s in range(3)]
    for s, model in enumerate(lone):
        model.fit_normalizer(_data(s, 0.0)[0][None])
        model.elites.copy_(torch.tensor([[s % CONFIG.ensemble_size, 3]]))
    pack = GaussianEnsemble.pack(lone)
    obs, act = torch.randn(3, 40, OBS), torch.randn(3, 40, ACT)
    reward, next_obs = pack.sample(obs, act, _generators([0, 1, 2]), pack.elites)
    mean, logvar = pack.predict_members(obs, act, pack.elites)
    for s, model in enumerate(lone):
        alone_reward, alone_next = model.sample(obs[s:s + 1], act[s:s + 1], _generators([s]), model.elites)
        assert torch.equal(reward[s], alone_reward[0]) and torch.equal(next_obs[s], alone_next[0])
        alone_mean, alone_logvar = model.predict_members(obs[s:s + 1], act[s:s + 1], model.elites)
        assert alone_logvar is not None and logvar is not None
        assert torch.equal(mean[s], alone_mean[0]) and torch.equal(logvar[s], alone_logvar[0])


def test_a_lone_ensemble_saved_before_the_seed_axis_loads() -> None:
    """A checkpoint written before the seed axis holds a 1-D input mean and std, elites and holdout losses: they load
    as a pack of one."""
    model = _fit_alone(0, *_data(0, 0.05)).model
    old = {k: (v[0] if k in ("input_mean", "input_std", "elites", "holdout_losses") else v)
           for k, v in model.state_dict().items()}
    assert old["input_mean"].dim() == 1 and old["elites"].dim() == 1
    restored = _lone(5)
    restored.load_state_dict(old)
    assert _same_state(restored.state_dict(), model.state_dict())


# -- the learned termination ------------------------------------------------------------------------------------

DONE = DoneModelConfig(hidden=16, max_epochs=8, batch_size=32)


def _classifier(seed: int) -> DoneClassifier:
    torch.manual_seed(seed)
    return DoneClassifier(OBS, DONE)


def _done_data(seed: int, terminal: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Next observations `N x D` that terminate above a seed's own cut (a `terminal` fraction of them)."""
    g = torch.Generator().manual_seed(2000 + seed)
    x = torch.randn(N, OBS, generator=g)
    cut = torch.quantile(x[:, 0], 1.0 - terminal) if terminal > 0 else math.inf
    return x, (x[:, 0] > cut).float()


def _fit_done_alone(seed: int, x: torch.Tensor, y: torch.Tensor, retrains: int
                    ) -> tuple[DoneClassifier, torch.optim.Optimizer, list[DoneFit]]:
    model = _classifier(seed)
    optimizer = make_done_optimizer(model)
    generator = _generators([seed])[0]
    fits = [fit_done_classifier(model, optimizer, x[None], y[None], [generator])[0] for _ in range(retrains)]
    return model, optimizer, fits


def _same_fit(a: DoneFit, b: DoneFit) -> bool:
    pairs = zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True)
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in pairs)


def test_a_classifier_in_a_pack_fits_as_alone_on_data_of_other_sizes() -> None:
    """Seeds with different numbers of terminal transitions (their stratified splits differ in size, and seed 2 has
    none yet): retrain after retrain, each seed's fit, weights and Adam state (its own step count) are its lone
    ones, bit for bit, and the pack classifies each seed's states with that seed's classifier (seed 2 terminates
    nothing but non-finite states)."""
    data = [_done_data(0, 0.05), _done_data(1, 0.13), _done_data(2, 0.0)]
    pack = DoneClassifier.pack([_classifier(s) for s in range(3)])
    optimizer = make_done_optimizer(pack)
    generators = _generators([0, 1, 2])
    x, y = torch.stack([x for x, _ in data]), torch.stack([y for _, y in data])
    fits = [fit_done_classifier(pack, optimizer, x, y, generators) for _ in range(2)]
    probe = torch.randn(3, 60, OBS)
    probe[2, 5, 0] = math.nan
    flags = pack(probe)
    for s in range(3):
        alone, alone_optimizer, alone_fits = _fit_done_alone(s, *data[s], retrains=2)
        assert all(_same_fit(fits[r][s], alone_fits[r]) for r in range(2))
        assert _same_state(pack.seed(s).state_dict(), alone.state_dict())
        assert torch.equal(flags[s], alone(probe[s:s + 1])[0])
        moments = seed_optimizer_state(optimizer.state_dict(), s, 3)["state"]
        for index, entry in alone_optimizer.state_dict()["state"].items():
            assert _same_state({k: v.reshape(-1) for k, v in moments[index].items()},
                               {k: v.reshape(-1) for k, v in entry.items()})
    steps = optimizer.state_dict()["state"][0]["step"].tolist()
    assert steps[0] != steps[1] and steps[2] == 0.0  # the premise: their step counts differ
    assert flags[2].nonzero().flatten().tolist() == [5]
    assert not alone_optimizer.state_dict()["state"]  # seed 2 never stepped: its packed state is Adam's start


def test_a_lone_classifier_saved_before_the_seed_axis_loads() -> None:
    model = _fit_done_alone(0, *_done_data(0, 0.1), retrains=1)[0]
    old = {k: (v[0] if k in ("input_mean", "input_std", "trained", "threshold_logit") else v)
           for k, v in model.state_dict().items()}
    assert old["trained"].dim() == 0 and old["input_mean"].dim() == 1
    restored = _classifier(5)
    restored.load_state_dict(old)
    assert _same_state(restored.state_dict(), model.state_dict())


@pytest.mark.parametrize("seeds", [1, 3])
def test_fresh_packs_start_untrained_with_the_configured_threshold(seeds: int) -> None:
    pack = DoneClassifier(OBS, DoneModelConfig(threshold=0.2), seeds=seeds)
    assert pack.trained.shape == (seeds,) and not bool(pack.trained.any())
    assert torch.allclose(pack.threshold_logit, torch.full((seeds,), math.log(0.25)))
