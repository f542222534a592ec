"""Retraining DHMBPO's dynamics model: permanent validation labels, bootstrap weights, z-test early stopping.

Each real transition gets, the first time a retrain meets it, a validation label (with probability
`validation_fraction`, never trained on) and E bootstrap weights (one per member, Exp(1) by default). A retrain
refreshes the normalizers from all real data, takes a random subset of at most `data_cap` transitions, and trains
with a fresh AdamW in epochs of at most `batches_per_epoch` minibatches (walking through one random order of the
training transitions, reshuffled when it runs out). After each epoch it scores the per-sample validation NLL of the
moment-matched ensemble and compares it with the best snapshot's by a one-sided paired test (a t-test under 1,000
validation samples, else a z-test): a p-value under `keep_p` resets the patience, one under `improvement_p` also
makes the epoch the best snapshot. Training stops when the patience runs out, at the epoch cap or (`max_seconds`, not
reproducible) the time cap; the best snapshot, possibly the weights the retrain started from, is restored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from mbpo_cli.models.dynamics import DynamicsEnsemble, make_dynamics_optimizer, raw_targets
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.normed_mlp import sampled_masks

TRAIN_ROWS = 512
"""A minibatch's gradient is accumulated over chunks of this many rows: every member's activations of a chunk stay
in a CPU's cache (a quarter less time per minibatch of 2,048 at Hopper's shapes; the same gradient up to rounding)."""
T_TEST_BELOW = 1000
"""Validation sets smaller than this are compared by a paired t-test, larger ones by a z-test (the public code)."""
MIN_VALIDATION = 2


@dataclass
class TransitionLabels:
    """Per real transition, oldest first (aligned with the real buffer's `ordered()`): a permanent validation label
    and the members' bootstrap weights."""

    validation: torch.Tensor
    """`N` bool: held out for validation."""
    weights: torch.Tensor
    """`N x E`: each member's weight of the transition in the loss."""
    seen: int = 0
    """Real transitions ever labeled (the run's env steps at the last retrain)."""

    @classmethod
    def empty(cls, members: int, device: torch.device) -> TransitionLabels:
        """No transition labeled yet."""
        return cls(torch.zeros(0, dtype=torch.bool, device=device), torch.zeros(0, members, device=device))

    def extend(self, total: int, kept: int, fraction: float, bootstrap: str, generator: torch.Generator) -> None:
        """Label the transitions added since the last call (`total` ever added), keeping the newest `kept` (the real
        buffer's size)."""
        new = min(total - self.seen, kept)
        members, device = self.weights.shape[1], self.weights.device
        validation = torch.rand(new, generator=generator, device=device) < fraction
        if bootstrap == "poisson":
            weights = torch.poisson(torch.ones(new, members, device=device), generator=generator)
        else:
            weights = torch.empty(new, members, device=device).exponential_(generator=generator)
        self.validation = torch.cat([self.validation, validation])[-kept:]
        self.weights = torch.cat([self.weights, weights])[-kept:]
        self.seen = total

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints."""
        return {"validation": self.validation.cpu(), "weights": self.weights.cpu(), "seen": self.seen}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore `state_dict()` (onto this object's device)."""
        device = self.weights.device
        self.validation = saved["validation"].to(device)
        self.weights = saved["weights"].to(device)
        self.seen = int(saved["seen"])


@dataclass(frozen=True)
class DynamicsFit:
    """What one retrain did."""

    epochs: int
    """Epochs trained."""
    best_epoch: int
    """The epoch of the restored snapshot (0: the weights the retrain started from)."""
    patience: int
    """The retrain's patience in epochs."""
    train_loss: float
    """Mean training loss of the last epoch."""
    validation_nll: float
    """Mean per-sample validation NLL (normalized units) of the restored model."""
    validation_samples: int

    def metrics(self) -> dict[str, float]:
        """The retrain's metrics for the registry."""
        return {"model_epochs": float(self.epochs), "model_best_epoch": float(self.best_epoch),
                "model_train_loss": self.train_loss, "model_validation_nll": self.validation_nll,
                "model_validation_samples": float(self.validation_samples)}


def epoch_limits(obs_dim: int, patience_scale: float, max_epochs_ratio: float, factor: float) -> tuple[int, int]:
    """Patience and epoch cap: floor(factor * patience_scale * ln(obs_dim + 1)) and `max_epochs_ratio` times that
    before flooring (each at least 1)."""
    base = max(patience_scale * math.log(obs_dim + 1), 1.0)
    return max(int(factor * base), 1), max(int(factor * max_epochs_ratio * base), 1)


def p_value(scores: torch.Tensor, best: torch.Tensor) -> float:
    """One-sided p-value that the per-sample `scores` (`N`) are lower than `best`'s, paired: a t-test under
    `T_TEST_BELOW` samples, else the normal CDF of the z statistic of their differences (NaN when they are all
    equal, 1 when a score is not finite)."""
    diff = (scores - best).double()
    n = diff.numel()
    if not bool(torch.isfinite(diff).all()):
        return 1.0  # a model gone non-finite is no improvement
    if n < T_TEST_BELOW:
        from scipy import stats  # loaded on first use: most commands never need it

        return float(stats.ttest_rel(scores.cpu().numpy(), best.cpu().numpy(), alternative="less").pvalue)
    z = float(diff.mean() / diff.std() * math.sqrt(n))
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def split(labels: TransitionLabels, n: int, cap: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation indices into the `n` labeled transitions: a random subset of at most `cap`, split by
    label (at least `MIN_VALIDATION` validation samples, moved from training when too few are labeled)."""
    device = labels.validation.device
    subset = torch.randperm(n, generator=generator, device=device)[:cap] if n > cap else torch.arange(n, device=device)
    held = labels.validation[subset]
    train, validation = subset[~held], subset[held]
    if validation.shape[0] < MIN_VALIDATION:
        moved = torch.randperm(train.shape[0], generator=generator, device=device)
        need = MIN_VALIDATION - validation.shape[0]
        validation = torch.cat([validation, train[moved[:need]]])
        train = train[moved[need:]]
    return train, validation


def fit_dynamics(model: DynamicsEnsemble, data: Batch, labels: TransitionLabels, factor: float,
                 generator: torch.Generator) -> DynamicsFit:
    """Retrain `model` on the real transitions `data` (`N`, oldest first, labeled by `labels`); see the module.

    `factor` multiplies the patience and the epoch cap (the first burst's 5).
    """
    cfg = model.config
    device = data.obs.device
    raw = raw_targets(data.obs, data.reward, data.next_obs)
    model.set_normalizers(data.obs, raw)
    train, validation = split(labels, data.obs.shape[0], cfg.data_cap, generator)
    order = validation[torch.randperm(validation.shape[0], generator=generator, device=device)]
    validation = order[: cfg.validation_batches * cfg.batch_size]
    x_val, y_val = model.inputs(data.obs[validation], data.act[validation]), model.targets(raw[validation])
    x_train, y_train = model.inputs(data.obs[train], data.act[train]), model.targets(raw[train])
    weights = labels.weights[train].T.contiguous()
    patience, max_epochs = epoch_limits(model.obs_dim, cfg.patience_scale, cfg.max_epochs_ratio, factor)

    optimizer = make_dynamics_optimizer(model)
    params = list(model.parameters())
    best = model.scores(x_val, y_val)
    snapshot = [p.detach().clone() for p in params]
    batches = Minibatches(train.shape[0], cfg.batch_size, generator)
    per_epoch = min(cfg.batches_per_epoch, batches.count)
    jitter = cfg.min_std / model.out_std[0]
    waited, best_epoch, epoch = 0, 0, 0
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    while epoch < max_epochs:
        loss_sum = torch.zeros((), device=device)
        for _ in range(per_epoch):
            idx = batches.next()
            y = y_train[idx].expand(model.members, -1, -1).clone()
            y[..., 0] += torch.randn(y.shape[:2], generator=generator, device=device) * jitter
            loss_sum += train_step(model, optimizer, x_train[idx], y, weights[:, idx], generator)
        epoch += 1
        scores = model.scores(x_val, y_val)
        p = p_value(scores, best)
        if p < cfg.keep_p:
            waited = 0
            if p < cfg.improvement_p:
                best, best_epoch = scores, epoch
                with torch.no_grad():
                    for saved, p_now in zip(snapshot, params, strict=True):
                        saved.copy_(p_now)
        else:
            waited += 1
        if waited > patience or (cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds):
            break
    with torch.no_grad():
        for saved, p_now in zip(snapshot, params, strict=True):
            p_now.copy_(saved)
    return DynamicsFit(epochs=epoch, best_epoch=best_epoch, patience=patience,
                       train_loss=float(loss_sum) / max(per_epoch, 1), validation_nll=float(best.mean()),
                       validation_samples=int(validation.shape[0]))


def train_step(model: DynamicsEnsemble, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One optimizer step on a minibatch (inputs `B x in`, jittered targets `E x B x out`, weights `E x B`), its
    gradient accumulated over chunks of `TRAIN_ROWS` rows (the minibatch's loss, each chunk with its own dropout
    masks); the loss, detached."""
    rows = x.shape[0]
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=x.device)
    for start in range(0, rows, TRAIN_ROWS):
        end = min(start + TRAIN_ROWS, rows)
        masks = sampled_masks(model.net.mask_shapes(end - start), model.config.dropout, generator, x.device)
        loss = model.nll(x[start:end], y[:, start:end], weights[:, start:end], masks) * ((end - start) / rows)
        loss.backward()
        total += loss.detach()
    optimizer.step()
    return total


class Minibatches:
    """Minibatches of `min(size, n)` indices into `n` samples, walking through one random order and drawing a new
    one when too few remain for a whole batch (the remainder is skipped)."""

    def __init__(self, n: int, size: int, generator: torch.Generator) -> None:
        self.n, self.size = n, min(size, n)
        self.count = n // self.size
        """Whole batches in one order."""
        self.generator = generator
        self.order = torch.randperm(n, generator=generator, device=generator.device)
        self.position = 0

    def next(self) -> torch.Tensor:
        """The next minibatch's indices `size`."""
        if self.position + self.size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
            self.position = 0
        batch = self.order[self.position : self.position + self.size]
        self.position += self.size
        return batch
