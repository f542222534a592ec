"""A learned termination function: a classifier of next observations, trained on real transitions.

Terminations are rare (one per episode), so the binary cross-entropy is class-weighted: each class weighs
`N / (2 N_class)` in the training split, so terminal and non-terminal transitions count equally. The
holdout split is stratified (the same fraction of each class) and drives early stopping; its accuracy and
its recall on terminal transitions are what a retrain reports. Until the data holds a terminal transition
the classifier predicts that nothing terminates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.config.schema import DoneModelConfig
from mbpo_cli.nn.mlp import BatchedMLP


@dataclass(frozen=True)
class DoneFit:
    """What one retrain of the classifier did (NaN metrics when a class is missing from the holdout)."""

    epochs: int
    terminal: int
    """Terminal transitions in the data."""
    holdout_accuracy: float
    holdout_recall: float
    """Fraction of the held-out terminal transitions predicted terminal."""


class DoneClassifier(nn.Module):
    """`next_obs N x D -> P(terminated) N`, an MLP on standardized inputs."""

    # Buffers (saved in the state dict), declared so that they type as tensors.
    input_mean: torch.Tensor
    """`D`: mean of the training split's next observations."""
    input_std: torch.Tensor
    """`D`: their std (1 where below 1e-12)."""
    trained: torch.Tensor
    """Scalar bool: set once the classifier was fitted on data holding a terminal transition."""

    def __init__(self, obs_dim: int, config: DoneModelConfig) -> None:
        super().__init__()
        self.config = config
        self.net = BatchedMLP(1, obs_dim, 1, config.hidden, config.layers, activation=nn.SiLU)
        self.register_buffer("input_mean", torch.zeros(obs_dim))
        self.register_buffer("input_std", torch.ones(obs_dim))
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))

    def logits(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Logits `N` of termination for raw next observations `N x D`."""
        x = (next_obs - self.input_mean) / self.input_std
        return self.net(x.unsqueeze(0)).squeeze(0).squeeze(-1)

    @torch.no_grad()
    def forward(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Termination `N` (bool) for next observations `N x D`: probability above the threshold.

        Non-finite observations terminate; before any terminal transition was seen, nothing else does.
        """
        finite = torch.isfinite(next_obs).all(dim=-1)
        if not bool(self.trained):
            return ~finite
        threshold = math.log(self.config.threshold / (1.0 - self.config.threshold))
        return ~finite | (self.logits(torch.nan_to_num(next_obs)) > threshold)


def _split(done: torch.Tensor, ratio: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified train and holdout indices: `ratio` of each class held out (at least one of a class of 2+)."""
    train, hold = [], []
    for cls in (done > 0.5, done <= 0.5):
        idx = cls.nonzero().squeeze(-1)
        idx = idx[torch.randperm(idx.shape[0], generator=generator, device=idx.device)]
        n_hold = min(max(int(idx.shape[0] * ratio), 1 if idx.shape[0] > 1 else 0), idx.shape[0])
        hold.append(idx[:n_hold])
        train.append(idx[n_hold:])
    return torch.cat(train), torch.cat(hold)


def _weighted_bce(logits: torch.Tensor, done: torch.Tensor, pos_weight: float, neg_weight: float) -> torch.Tensor:
    weights = torch.where(done > 0.5, pos_weight, neg_weight)
    return F.binary_cross_entropy_with_logits(logits, done, weight=weights)


def fit_done_classifier(model: DoneClassifier, optimizer: torch.optim.Optimizer, next_obs: torch.Tensor,
                        done: torch.Tensor, generator: torch.Generator) -> DoneFit:
    """Train on real next observations `N x D` and termination flags `N` until the holdout loss stops improving.

    Keeps the best holdout weights; returns the epochs run and the holdout accuracy and terminal recall.
    """
    cfg = model.config
    terminal = int((done > 0.5).sum())
    if terminal == 0:
        return DoneFit(0, 0, math.nan, math.nan)
    train_idx, hold_idx = _split(done, cfg.holdout_ratio, generator)
    x, y = next_obs[train_idx], done[train_idx]
    model.input_mean.copy_(x.mean(dim=0))
    std = x.std(dim=0, unbiased=False)
    model.input_std.copy_(torch.where(std < 1e-12, torch.ones_like(std), std))
    n, n_pos = y.shape[0], float((y > 0.5).sum())
    pos_weight, neg_weight = n / (2.0 * max(n_pos, 1.0)), n / (2.0 * max(n - n_pos, 1.0))
    x_hold, y_hold = next_obs[hold_idx], done[hold_idx]

    def holdout_loss() -> float:
        with torch.no_grad():
            return float(_weighted_bce(model.logits(x_hold), y_hold, pos_weight, neg_weight))

    best, best_state, since, epoch = holdout_loss(), _copy(model), 0, 0
    while epoch < cfg.max_epochs and since <= cfg.patience:
        order = torch.randperm(n, generator=generator, device=x.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = _weighted_bce(model.logits(x[idx]), y[idx], pos_weight, neg_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epoch += 1
        current = holdout_loss()
        if current < best * (1.0 - 0.01) or not math.isfinite(best):
            best, best_state, since = current, _copy(model), 0
        else:
            since += 1
    model.load_state_dict(best_state)
    model.trained.fill_(True)
    with torch.no_grad():
        predicted = model(x_hold)
    actual = y_hold > 0.5
    accuracy = float((predicted == actual).float().mean()) if actual.numel() else math.nan
    recall = float(predicted[actual].float().mean()) if bool(actual.any()) else math.nan
    return DoneFit(epoch, terminal, accuracy, recall)


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_done_optimizer(model: DoneClassifier) -> torch.optim.Adam:
    """Adam over the classifier's weights."""
    return torch.optim.Adam(model.net.parameters(), lr=model.config.lr)
