"""Model retraining, in place or overlapped with the agent's updates (`train.pipeline`).

`fit_models` retrains the ensemble (and the learned termination) on a snapshot of the real data. The loop calls
it in place (sequential MBPO) or through a `ModelJob`: a private copy of the model, its optimizer and its random
streams, trained in a worker thread while the main thread keeps stepping the environment and updating the agent.
The job's result is taken at the next point where the model is due (`swap_in`), never earlier or later, and the
job touches nothing the main thread reads, so a seeded pipelined run is exactly reproducible.

Staleness: with the pipeline, the rollouts branched at a due point come from the model trained on the real data
of the previous due point (`train_freq` real steps older than in the sequential loop); the first model is
trained in place before the first rollouts, and the second due point rolls it out again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.models.ensemble import (
    GaussianEnsemble,
    fit_ensemble,
    load_model_optimizer,
    make_model_optimizer,
    model_targets,
)
from mbpo_cli.models.termination.learned import DoneClassifier, fit_done_classifier, make_done_optimizer
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.optim import SeedAdam, learning_rates_kept

JOB_GENERATORS = ("model", "done")
"""The run's generators that model training draws from (a job draws from private copies)."""


@dataclass
class Models:
    """The models a retrain trains, with their optimizers (the done classifier only with learned termination)."""

    model: GaussianEnsemble
    optimizer: SeedAdam
    done_model: DoneClassifier | None = None
    done_optimizer: torch.optim.Optimizer | None = None

    def clone(self) -> Models:
        """Independent copies with the same weights and optimizer states."""
        model = GaussianEnsemble(self.model.obs_dim, self.model.in_dim - self.model.obs_dim, self.model.config,
                                 self.model.seeds)
        model.to(self.model.input_mean.device).load_state_dict(self.model.state_dict())
        optimizer = make_model_optimizer(model)
        optimizer.load_state_dict(self.optimizer.state_dict())
        copy = Models(model, optimizer)
        if self.done_model is not None and self.done_optimizer is not None:
            done = DoneClassifier(self.done_model.obs_dim, self.done_model.config, self.done_model.seeds)
            done.to(self.model.input_mean.device).load_state_dict(self.done_model.state_dict())
            copy.done_model, copy.done_optimizer = done, make_done_optimizer(done)
            copy.done_optimizer.load_state_dict(self.done_optimizer.state_dict())
        return copy

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint holds of them: `model`, `model_optimizer` and, with the learned termination,
        `done_model` and `done_optimizer` (their state dicts)."""
        saved = {"model": self.model.state_dict(), "model_optimizer": self.optimizer.state_dict()}
        if self.done_model is not None and self.done_optimizer is not None:
            saved["done_model"] = self.done_model.state_dict()
            saved["done_optimizer"] = self.done_optimizer.state_dict()
        return saved

    def load_checkpoint_state(self, saved: dict[str, Any]) -> None:
        """Load what `checkpoint_state` saved (also a model optimizer of an earlier layout: `load_model_optimizer`);
        each optimizer keeps the learning rate it was built with, and training steps run eagerly until recaptured."""
        self.model.load_state_dict(saved["model"])
        with learning_rates_kept(self.optimizer):
            load_model_optimizer(self.optimizer, saved["model_optimizer"])
        self.model.graph = None
        if self.done_model is not None and self.done_optimizer is not None:
            self.done_model.load_state_dict(saved["done_model"])
            with learning_rates_kept(self.done_optimizer):
                self.done_optimizer.load_state_dict(saved["done_optimizer"])


def fit_models(models: Models, data: Sequence[Batch], generators: Sequence[dict[str, torch.Generator]], env_step: int,
               max_seconds: float | None = None, cancelled: threading.Event | None = None) -> list[dict[str, float]]:
    """Retrain each seed of the models on its real transitions (`data[s]`, as many for every seed: the seeds step in
    lockstep) with its own generators (`generators[s]`); each seed's retrain metrics.

    A seed whose losses went non-finite has them so in its metrics (`fit_failure` says so). `max_seconds` caps the
    training time (`model.max_train_seconds`); `cancelled` stops it (`FitCancelled`).
    """
    inputs = torch.stack([torch.cat([d.obs, d.act], dim=-1) for d in data])  # S x N x in
    targets = torch.stack([model_targets(d.obs, d.reward, d.next_obs) for d in data])
    start = time.perf_counter()
    results = fit_ensemble(models.model, models.optimizer, inputs, targets, [g["model"] for g in generators],
                           max_seconds, cancelled.is_set if cancelled is not None else None)
    seconds = time.perf_counter() - start
    infos = []
    for result in results:
        elite_losses = [result.holdout_losses[i] for i in result.elites]
        infos.append({
            "model_train_loss": result.train_loss,
            metric_keys.MODEL_HOLDOUT_LOSS: sum(elite_losses) / len(elite_losses),
            "model_elite_loss_min": min(elite_losses),
            "model_elite_loss_max": max(elite_losses),
            metric_keys.MODEL_EPOCHS: float(result.epochs),
            metric_keys.TIME_MODEL_FIT: seconds,
        })
    if models.done_model is not None and models.done_optimizer is not None:
        fits = fit_done_classifier(models.done_model, models.done_optimizer, torch.stack([d.next_obs for d in data]),
                                   torch.stack([d.done for d in data]), [g["done"] for g in generators])
        for info, fit in zip(infos, fits, strict=True):
            info.update({"done_terminal": float(fit.terminal), "done_epochs": float(fit.epochs),
                         "done_holdout_accuracy": fit.holdout_accuracy, "done_holdout_recall": fit.holdout_recall,
                         "done_holdout_fpr": fit.holdout_fpr, "done_threshold": fit.threshold})
    return infos


def fit_failure(info: dict[str, float], env_step: int) -> str | None:
    """What went wrong in a seed's retrain of env step `env_step` (`fit_models`' metrics `info`): its losses went
    non-finite; None when they are finite."""
    losses = [info["model_train_loss"], info[metric_keys.MODEL_HOLDOUT_LOSS], info["model_elite_loss_min"],
              info["model_elite_loss_max"]]
    if all(math.isfinite(v) for v in losses):
        return None
    return f"non-finite loss in model training at env step {env_step}"


class ModelJob:
    """One retrain running in a worker thread on private copies of the models and of their generators.

    Started with the real data of env step `started_at` (a snapshot: the main thread's later writes to the
    buffer are not seen); `result()` waits for it.
    """

    def __init__(self, models: Models, data: Batch, generators: dict[str, torch.Generator], started_at: int,
                 max_seconds: float | None = None) -> None:
        self.models = models.clone()
        self.generators = {name: _copy_generator(generators[name]) for name in JOB_GENERATORS}
        self.started_at = started_at
        self.info: dict[str, float] = {}
        self._data: Batch | None = Batch(*(t.clone() for t in data))
        self._max_seconds = max_seconds
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        # Not a daemon: a process that ends while a retrain runs waits for it rather than killing a thread
        # inside a torch kernel.
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name="mbpo-model-job")
        self._thread.start()

    @classmethod
    def finished(cls, models: Models, generators: dict[str, torch.Generator], started_at: int,
                 info: dict[str, float]) -> ModelJob:
        """A job whose result is already known (restored from a checkpoint)."""
        job = cls.__new__(cls)
        job.models, job.generators, job.started_at, job.info = models, generators, started_at, dict(info)
        job._data, job._max_seconds, job._error, job._thread = None, None, None, None
        job._cancelled = threading.Event()
        return job

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint holds of a finished job: its start step, metrics, generators, models and optimizers."""
        return {
            "started_at": self.started_at,
            "info": dict(self.info),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            **self.models.checkpoint_state(),
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], models: Models, device: torch.device) -> ModelJob:
        """The finished job `checkpoint_state` saved, on copies of `models` (the run's) and generators on `device`."""
        copies = models.clone()
        copies.load_checkpoint_state(saved)
        generators = {}
        for name, generator_state in saved["generators"].items():
            generators[name] = torch.Generator(device=device)
            generators[name].set_state(generator_state)
        return cls.finished(copies, generators, int(saved["started_at"]), saved["info"])

    def _run(self) -> None:
        try:
            assert self._data is not None
            self.info = fit_models(self.models, [self._data], [self.generators], self.started_at, self._max_seconds,
                                   self._cancelled)[0]
            failure = fit_failure(self.info, self.started_at)
            if failure is not None:
                raise NumericalError(failure)
        except BaseException as err:  # handed to the main thread by result()
            self._error = err

    def result(self) -> ModelJob:
        """Wait until trained (re-raising its failure in the caller's thread); returns the job."""
        if self._thread is not None:
            self._thread.join()
            self._thread, self._data = None, None
        if self._error is not None:
            raise self._error
        return self

    def cancel(self) -> None:
        """Stop the training at its next epoch boundary and wait for the thread (the result is discarded)."""
        if self._thread is not None:
            self._cancelled.set()
            self._thread.join()
            self._thread, self._data = None, None


def _copy_generator(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy
