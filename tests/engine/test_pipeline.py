"""Model retraining in a worker thread (`train.pipeline`): the same result as in place, cancellation, failures,
the time cap, the thread split and the weight-decay optimizer."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from mbpo_cli.config.load import build_config
from mbpo_cli.config.schema import DoneModelConfig, ModelConfig
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.pipeline import ModelJob, Models, fit_models
from mbpo_cli.engine.state import build_run, set_threads
from mbpo_cli.models.ensemble import GaussianEnsemble, fit_ensemble, load_model_optimizer, make_model_optimizer
from mbpo_cli.models.termination.learned import DoneClassifier, make_done_optimizer
from mbpo_cli.nn.batch import Batch

OBS, ACT = 3, 2


def _models(max_epochs: int | None = 4) -> Models:
    torch.manual_seed(0)
    model = GaussianEnsemble(OBS, ACT, ModelConfig(hidden=16, layers=2, weight_decay=(1e-4, 1e-4, 1e-4),
                                                   ensemble_size=3, elites=2, max_epochs=max_epochs))
    return Models(model, make_model_optimizer(model))


def _data(n: int = 300) -> Batch:
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(n, OBS, generator=gen)
    act = torch.rand(n, ACT, generator=gen) * 2 - 1
    next_obs = obs + 0.1 * act.sum(dim=1, keepdim=True)
    return Batch(obs, act, obs.sum(dim=1), next_obs, torch.zeros(n))


def _generators() -> dict[str, torch.Generator]:
    return {"model": torch.Generator().manual_seed(5), "done": torch.Generator().manual_seed(6)}


def _untimed(info: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in info.items() if not k.startswith("time_")}


def test_a_job_trains_copies_to_the_same_result_as_in_place() -> None:
    in_place, generators = _models(), _generators()
    info = fit_models(in_place, [_data()], [generators], env_step=7)[0]

    original, job_generators = _models(), _generators()
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    job = ModelJob(original, _data(), job_generators, started_at=7).result()
    assert _untimed(job.info) == _untimed(info) and info["time_model_fit"] > 0
    for key, value in in_place.model.state_dict().items():
        assert torch.equal(job.models.model.state_dict()[key], value), key
    # The job trained copies: the models it started from and the run's generators are untouched.
    assert all(torch.equal(original.model.state_dict()[k], v) for k, v in before.items())
    assert torch.equal(job_generators["model"].get_state(), _generators()["model"].get_state())
    assert torch.equal(job.generators["model"].get_state(), generators["model"].get_state())


def test_a_failing_job_raises_in_the_caller_and_names_the_step() -> None:
    data = _data()
    bad = Batch(data.obs, data.act, data.reward.clone().fill_(math.nan), data.next_obs, data.done)
    job = ModelJob(_models(), bad, _generators(), started_at=1234)
    with pytest.raises(NumericalError, match="non-finite loss in model training at env step 1234"):
        job.result()


def test_cancel_stops_a_long_job_at_an_epoch_boundary() -> None:
    job = ModelJob(_models(max_epochs=None), _data(3000), _generators(), started_at=0)
    job.cancel()
    assert not any(t.name == "mbpo-model-job" and t.is_alive() for t in threading.enumerate())


def test_max_seconds_ends_training_after_the_first_epoch_past_it() -> None:
    models = _models(max_epochs=50)
    data = _data()
    inputs = torch.cat([data.obs, data.act], dim=-1)
    targets = torch.cat([data.reward.unsqueeze(-1), data.next_obs - data.obs], dim=-1)
    capped = fit_ensemble(models.model, models.optimizer, inputs[None], targets[None],
                          [torch.Generator().manual_seed(0)], max_seconds=1e-9)
    assert capped[0].epochs == 1


def test_the_optimizer_decays_each_layer_as_the_loss_term_did() -> None:
    """Adam's coupled weight decay adds `decay * W` to each layer's gradient: with a zero loss gradient, Adam's
    first step moves the weights by `lr * g / (|g| + eps)` for `g = decay * W`, biases and bounds not at all."""
    models = _models()
    model, optimizer = models.model, models.optimizer
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    weights = {id(w) for w in model.net.weights}
    for old, p in zip(before, model.parameters(), strict=True):
        if id(p) in weights:
            g = 1e-4 * old
            expected = old - model.config.lr * g / (g.abs() + 1e-8)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-4, atol=1e-6)
        else:
            assert torch.equal(p.detach(), old)


def test_a_model_optimizer_saved_with_one_group_loads_its_moments() -> None:
    models = _models()
    old = torch.optim.Adam(models.model.parameters(), lr=1e-3)
    for p in models.model.parameters():
        p.grad = torch.ones_like(p)
    old.step()
    load_model_optimizer(models.optimizer, old.state_dict())
    saved, loaded = old.state_dict()["state"], models.optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[i]["exp_avg"], loaded[i]["exp_avg"]) for i in saved)
    assert [g["weight_decay"] for g in models.optimizer.param_groups] == pytest.approx([1e-4, 1e-4, 1e-4, 0.0])


TINY = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 3},
    "rollout": {"batch_size": 200, "schedule": [1, 15, 1, 1], "train_freq": 50},
    "agent": {"updates_per_step": 1, "batch_size": 32},
    "sac": {"hidden": 32},
    "train": {"steps": 300, "epoch_length": 100, "init_steps": 100, "eval_episodes": 1, "threads": 1,
              "pipeline": True},
}


def test_an_error_in_the_loop_cancels_the_running_job() -> None:
    state = build_run(build_config(TINY))

    def fail_after_the_job_started(event: object) -> None:
        if state.model_job is not None and state.env_step >= 160:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        train(state, fail_after_the_job_started)
    assert state.model_job is None
    assert not any(t.name == "mbpo-model-job" and t.is_alive() for t in threading.enumerate())


def test_the_pipeline_takes_each_job_at_the_next_due_point() -> None:
    state = build_run(build_config(TINY))
    trained_at: list[tuple[int, int]] = []

    def record(event: object) -> None:
        if state.env_step % 50 == 1 and state.env_step > 100:
            trained_at.append((state.env_step - 1, state.model_trained_at))

    train(state, record)
    # Due points 100, 150, ...: the first model is trained in place at 100 and used again at 150; from 200 on,
    # each due point's model was trained on the data of the previous one.
    assert trained_at == [(100, 100), (150, 100), (200, 150), (250, 200)]


def test_a_pipelined_run_with_learned_termination_trains_its_classifier_in_the_job() -> None:
    config = build_config({**TINY, "env": {"id": "InvertedPendulum-v5", "termination": "learned"},
                           "train": {**TINY["train"], "steps": 260}})
    state = build_run(config)
    first_classifier = state.done_model
    epochs: list[dict[str, float]] = []
    train(state, lambda e: epochs.append(e.metrics) if hasattr(e, "metrics") and "epoch" in e.metrics else None)
    # The job's copies became the run's models at the due point of step 250, the classifier among them.
    assert state.model_trained_at == 200 and state.done_model is not first_classifier
    assert epochs[-1]["done_terminal"] > 0
    assert state.model_job is not None
    state.model_job.cancel()


def test_the_pipeline_gives_each_activity_half_the_threads() -> None:
    before = torch.get_num_threads()
    try:
        set_threads(build_config({**TINY, "train": {**TINY["train"], "threads": 2}}))
        assert torch.get_num_threads() == 1
        set_threads(build_config({**TINY, "algo": "model_free", "train": {**TINY["train"], "threads": 2}}))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _old_format(saved: dict) -> dict:
    """A checkpoint's models as written before the seed axis: 1-D normalizers, elites and holdout losses, a scalar
    trained flag and threshold, scalar Adam step counts."""
    lone_keys = ("input_mean", "input_std", "elites", "holdout_losses", "trained", "threshold_logit")
    old = {}
    for name, state in saved.items():
        if name.endswith("optimizer"):
            old[name] = {"state": {i: {k: (v.reshape(()) if k == "step" else v) for k, v in entry.items()}
                                   for i, entry in state["state"].items()},
                         "param_groups": state["param_groups"]}
        else:
            old[name] = {k: (v[0] if k in lone_keys else v) for k, v in state.items()}
    return old


def test_a_checkpoint_written_before_the_seed_axis_loads_as_a_pack_of_one() -> None:
    """The ensemble, the learned termination and their optimizers saved in the lone format load (their per-seed
    tensors gain a seed axis of 1, the ensemble's step counts one per seed) and hold the same numbers."""
    models = _with_classifier(_models())
    data = _data()
    data.done[::10] = 1.0
    fit_models(models, [data], [_generators()], env_step=0)
    saved = models.checkpoint_state()
    old = _old_format(saved)
    assert old["model"]["input_mean"].dim() == 1 and old["done_model"]["trained"].dim() == 0
    assert old["model_optimizer"]["state"][0]["step"].dim() == 0
    restored = _with_classifier(_models())
    restored.load_checkpoint_state(old)
    for name, state in restored.checkpoint_state().items():
        if name.endswith("optimizer"):
            for index, entry in state["state"].items():
                # the done optimizer is torch's Adam: its step stays a scalar until its next retrain
                assert all(torch.equal(v.reshape(-1), saved[name]["state"][index][k].reshape(-1))
                           for k, v in entry.items()), (name, index)
        else:
            assert all(torch.equal(v, saved[name][k]) for k, v in state.items()), name


def _with_classifier(models: Models) -> Models:
    torch.manual_seed(1)
    done = DoneClassifier(OBS, DoneModelConfig(hidden=8, max_epochs=3))
    models.done_model, models.done_optimizer = done, make_done_optimizer(done)
    return models
