"""The probabilistic ensemble dynamics model of MBPO.

E members predict a Gaussian over `[reward, next_obs - obs]` from `[obs, action]` inputs normalized
by the real data's mean and std. Training follows the official implementation: each member fits its
own bootstrap of the training split, a holdout split (20%, at most 5,000 samples) drives early
stopping with per-member best-weight restore, and the members with the lowest holdout MSE are elites.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.config.schema import ModelConfig
from mbpo_cli.nn.graphs import CapturedStep, capture_step
from mbpo_cli.nn.mlp import BatchedMLP


@dataclass(frozen=True)
class FitResult:
    """What one retrain did."""

    epochs: int
    """Training epochs run."""
    train_loss: float
    """Mean training loss of the last epoch."""
    holdout_losses: list[float]
    """Holdout MSE per member after restoring each member's best weights (E values)."""
    elites: list[int]
    """Indices of the elite members, best first."""


class GaussianEnsemble(nn.Module):
    """E probabilistic (or deterministic) networks with learned log-variance bounds."""

    # Buffers (saved in the state dict), declared so that they type as tensors.
    input_mean: torch.Tensor
    """`in`: mean of the training split's inputs."""
    input_std: torch.Tensor
    """`in`: their std (1 where below 1e-12)."""
    elites: torch.Tensor
    """`elites` member indices (int64), best holdout MSE first."""
    holdout_losses: torch.Tensor
    """`E`: holdout MSE per member at the last retrain."""
    decay: torch.Tensor
    """`layers + 1`: the L2 weight-decay coefficient of each layer."""

    def __init__(self, obs_dim: int, act_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.obs_dim = obs_dim
        self.in_dim = obs_dim + act_dim
        self.out_dim = obs_dim + 1
        head = self.out_dim if config.deterministic else 2 * self.out_dim
        self.net = BatchedMLP(config.ensemble_size, self.in_dim, head, config.hidden, config.layers,
                              activation=nn.SiLU, init="truncated_normal")
        self.max_logvar = nn.Parameter(torch.full((1, 1, self.out_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, self.out_dim), -10.0))
        self.register_buffer("input_mean", torch.zeros(self.in_dim))
        self.register_buffer("input_std", torch.ones(self.in_dim))
        self.register_buffer("elites", torch.arange(config.elites))
        self.register_buffer("holdout_losses", torch.zeros(config.ensemble_size))
        decay = torch.tensor(config.weight_decay, dtype=torch.float32)
        self.register_buffer("decay", decay)
        self.graph: CapturedStep[torch.Tensor] | None = None
        self.graph_key: tuple[torch.optim.Optimizer, torch.Size] | None = None

    # -- prediction -------------------------------------------------------------------------------

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """`... x in` -> the same, standardized by the fitted mean and std."""
        return (inputs - self.input_mean) / self.input_std

    def _head(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.config.deterministic:
            return raw, None
        mean, logvar = raw.split(self.out_dim, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalized inputs `E x B x in` -> mean and log-variance `E x B x out` (None if deterministic)."""
        return self._head(self.net(x))

    @torch.no_grad()
    def sample(
        self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One model step for N states: reward `N` and next observation `N x obs`.

        Each sample is assigned a uniformly random member of `members` (M indices) through a random
        permutation split into M equal shares, so only that member's forward is computed and the
        batched matmul keeps a static `M x ceil(N/M) x in` shape (padded with repeated states, also when
        N < M / 2). The output is sampled from the member's Gaussian (its mean when the model is deterministic).
        """
        n, m = obs.shape[0], members.shape[0]
        share = math.ceil(n / m)
        order = torch.randperm(n, generator=generator, device=obs.device)
        pad = share * m - n
        if pad > 0:
            order = torch.cat([order, order.repeat(math.ceil(pad / n))[:pad]])
        x = self.normalize(torch.cat([obs, act], dim=-1))[order].view(m, share, self.in_dim)
        mean, logvar = self._head(self.net.forward_members(x, members))
        if logvar is not None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + noise * torch.exp(0.5 * logvar)
        out = torch.empty(n, self.out_dim, device=obs.device, dtype=mean.dtype)
        out[order[:n]] = mean.reshape(share * m, self.out_dim)[:n]
        return out[:, 0], obs + out[:, 1:]

    @torch.no_grad()
    def predict_members(
        self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every member of `members` (M indices) on the same N states: mean and log-variance `M x N x out` of
        `[reward, next_obs - obs]` (log-variance None when the model is deterministic)."""
        x = self.normalize(torch.cat([obs, act], dim=-1))
        return self._head(self.net.forward_members(x.unsqueeze(0).expand(members.shape[0], -1, -1), members))

    @torch.no_grad()
    def mean_step(
        self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' average prediction, no sampling: reward `N` and next observation `N x obs`."""
        mean, _ = self.predict_members(obs, act, members)
        out = mean.mean(dim=0)
        return out[:, 0], obs + out[:, 1:]

    # -- training ---------------------------------------------------------------------------------

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss on normalized inputs `E x B x in` and targets `E x B x out` (a scalar).

        Gaussian negative log-likelihood (MSE when deterministic) averaged over batch and dims, summed over
        members, plus the log-variance bound penalty. The per-layer L2 weight decay is not in it: the optimizer
        applies it (`make_model_optimizer`), the same gradient as `decay * |W|^2 / 2` in the loss.
        """
        mean, logvar = self(x)
        if logvar is None:
            return (mean - y).pow(2).mean(dim=(1, 2)).sum()
        fit = ((mean - y).pow(2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
        return fit + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    def train_step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One gradient step on normalized inputs `E x B x in`, targets `E x B x out`; the loss, detached.

        Runs as the captured CUDA graph when one exists for this optimizer and this minibatch shape (the
        returned loss is then valid until the next step), else eagerly.
        """
        if self.graph is not None and self.graph_key == (optimizer, x.shape):
            return self.graph(x, y)
        return self._eager_step(optimizer, x, y)

    def _eager_step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def use_cuda_graph(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> str:
        """Capture the training step for minibatches shaped like `x`, `y` (CUDA only); says how steps will run.

        The model's and the optimizer's state are left as they were. Optimizer states restored from a
        checkpoint must be loaded before this call.
        """
        self.graph, mode = capture_step(lambda a, b: self._eager_step(optimizer, a, b), [x, y], self, [optimizer])
        self.graph_key = (optimizer, x.shape)
        return mode

    @torch.no_grad()
    def holdout_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member MSE of the mean on normalized inputs `H x in`, targets `H x out` -> `E`."""
        e = self.config.ensemble_size
        mean, _ = self(x.unsqueeze(0).expand(e, -1, -1))
        return (mean - y).pow(2).mean(dim=(1, 2))

    def fit_normalizer(self, inputs: torch.Tensor) -> None:
        """Set the input mean and std from raw inputs `N x in` (a std below 1e-12 becomes 1)."""
        self.input_mean.copy_(inputs.mean(dim=0))
        std = inputs.std(dim=0, unbiased=False)
        self.input_std.copy_(torch.where(std < 1e-12, torch.ones_like(std), std))


def disagreement(mean: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
    """How much M members disagree about each of N states: `M x N x D` Gaussians -> `N` (>= 0).

    A geometric Jensen-Shannon divergence of all M members at once, with equal weights: the mean over members of
    the KL divergence from each member's diagonal Gaussian to their normalized geometric mean (a Gaussian whose
    precision is the mean precision and whose mean is the precision-weighted mean), summed over the D dimensions.
    It is 0 when the members agree, grows with the spread of their means relative to their own variances, and is
    unchanged by a rescaling of any dimension. A deterministic model (no log-variance) counts as unit variances.

    The idea of measuring an ensemble's disagreement with a geometric Jensen-Shannon divergence is MACURA's
    (Frauenknecht et al., ICML 2024); its measure is another: the mean over every pair of members of a two-member
    divergence taken the other way, from the pair's geometric mean to each member (a closed form without a trace
    term), over the whole ensemble and over the reward as well as the next state. The two give different numbers
    even for two members. The adaptive horizon passes the rollout members (the elites by default) and the
    next-state dimensions only.
    """
    precision = torch.ones_like(mean) if logvar is None else torch.exp(-logvar)
    geo_precision = precision.mean(dim=0)
    geo_mean = (precision * mean).mean(dim=0) / geo_precision
    ratio = geo_precision / precision
    kl = 0.5 * (ratio + geo_precision * (mean - geo_mean).pow(2) - 1.0 - torch.log(ratio))
    return kl.sum(dim=-1).mean(dim=0)


def model_targets(obs: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Training targets `N x (1 + obs)`: reward, then the observation change."""
    return torch.cat([reward.unsqueeze(-1), next_obs - obs], dim=-1)


class FitCancelled(Exception):
    """`fit_ensemble` was asked to stop (its model is left mid-training)."""


def fit_ensemble(
    model: GaussianEnsemble,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    max_seconds: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train `model` on raw inputs `N x in` and targets `N x out` until the holdout stops improving.

    Sets the normalizer from the training split, restores each member's best weights, and records
    the holdout losses and elites on the model. `max_seconds` also ends training after the first epoch that
    ends past it (the official `max_model_t`; the result then depends on the machine's speed). `stop` is asked
    after every epoch; when it says True, `FitCancelled` is raised.
    """
    cfg = model.config
    x_train, y_train, x_hold, y_hold = holdout_split(model, inputs, targets, generator)
    n_train = x_train.shape[0]
    bootstrap = torch.randint(n_train, (cfg.ensemble_size, n_train), generator=generator, device=inputs.device)
    best = MemberBest(model)
    epochs_since_improvement = 0
    epoch = 0
    train_loss = math.nan
    started = time.perf_counter()
    while cfg.max_epochs is None or epoch < cfg.max_epochs:
        train_loss = train_epoch(model, optimizer, x_train, y_train, bootstrap, generator)
        epoch += 1
        improved = best.update(model.holdout_mse(x_hold, y_hold))
        epochs_since_improvement = 0 if improved else epochs_since_improvement + 1
        if stop is not None and stop():
            raise FitCancelled
        if epochs_since_improvement > cfg.patience:
            break
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
    best.restore()
    losses = model.holdout_mse(x_hold, y_hold)
    ranking = losses.argsort()
    model.holdout_losses.copy_(losses)
    model.elites.copy_(ranking[: cfg.elites])
    return FitResult(
        epochs=epoch,
        train_loss=train_loss,
        holdout_losses=losses.tolist(),
        elites=ranking[: cfg.elites].tolist(),
    )


def holdout_split(model: GaussianEnsemble, inputs: torch.Tensor, targets: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random split of raw inputs `N x in` and targets `N x out` into training and holdout (`holdout_ratio`, at
    most `max_holdout`); sets the normalizer from the training split. Returns the normalized training inputs and
    their targets, then the holdout's (the training split's when the holdout is empty)."""
    cfg = model.config
    n = inputs.shape[0]
    n_holdout = min(int(n * cfg.holdout_ratio), cfg.max_holdout)
    if n - n_holdout < 1:
        raise ValueError(f"need at least 2 samples to train the model, got {n}")
    perm = torch.randperm(n, generator=generator, device=inputs.device)
    train_idx, holdout_idx = perm[n_holdout:], perm[:n_holdout]
    model.fit_normalizer(inputs[train_idx])
    x_train, y_train = model.normalize(inputs[train_idx]), targets[train_idx]
    if n_holdout == 0:
        return x_train, y_train, x_train, y_train
    return x_train, y_train, model.normalize(inputs[holdout_idx]), targets[holdout_idx]


def train_epoch(model: GaussianEnsemble, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                bootstrap: torch.Tensor, generator: torch.Generator) -> float:
    """One epoch: each member steps through its bootstrap `E x N` of the training inputs `N x in` and targets
    `N x out` in a fresh random order, `batch_size` at a time. The mean training loss (one device read)."""
    e, n = bootstrap.shape
    shuffle = torch.rand(e, n, generator=generator, device=x.device).argsort(dim=1)
    order = bootstrap.gather(1, shuffle)
    total = torch.zeros((), device=x.device)
    batches = 0
    for start in range(0, n, model.config.batch_size):
        idx = order[:, start : start + model.config.batch_size]
        total += model.train_step(optimizer, x[idx], y[idx])
        batches += 1
    return float(total) / batches


class MemberBest:
    """Each member's best holdout loss so far and its network weights then: early stopping with per-member
    best-weight restore."""

    def __init__(self, model: GaussianEnsemble) -> None:
        self.improvement = model.config.improvement
        self.params = list(model.net.parameters())
        self.saved = [p.detach().clone() for p in self.params]
        self.losses = torch.full((model.config.ensemble_size,), math.inf, device=model.input_mean.device)
        """`E`: the best holdout MSE of each member."""

    def update(self, losses: torch.Tensor) -> bool:
        """Keep the weights of each member whose holdout MSE (`E`) improved by more than `improvement` (relative; any
        finite loss improves on none); whether any did."""
        improved = (self.losses - losses) / self.losses > self.improvement
        improved |= torch.isinf(self.losses) & torch.isfinite(losses)
        self.losses = torch.where(improved, losses, self.losses)
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params, strict=True):
                saved[improved] = p[improved]
        return bool(improved.any())

    def restore(self) -> None:
        """Every member back to its best weights."""
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params, strict=True):
                p.copy_(saved)


def make_model_optimizer(model: GaussianEnsemble) -> torch.optim.Adam:
    """Fused Adam over the networks and the log-variance bounds, each layer's weights in a parameter group whose
    `weight_decay` is the layer's L2 coefficient (biases and bounds undecayed).

    Adam's coupled weight decay adds `decay * W` to the gradient before the moment updates, exactly the gradient
    of the official implementation's `decay * |W|^2 / 2` loss term, in one fused kernel instead of extra ops per
    step. The flattened parameter order is `model.parameters()`'s, as in a single group.
    """
    weights = list(model.net.weights)
    decayed = {id(w) for w in weights}
    groups: list[dict] = [{"params": [w], "weight_decay": float(d)} for w, d in zip(weights, model.decay.tolist(),
                                                                                    strict=True)]
    groups.append({"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=model.config.lr, fused=True)


def load_model_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a model optimizer's saved state, also from a checkpoint written before the per-layer groups (one group
    holding every parameter in the same flattened order): its moments are kept, the groups' settings are this
    optimizer's."""
    groups = optimizer.state_dict()["param_groups"]
    if len(saved["param_groups"]) != len(groups):
        saved = {"state": saved["state"], "param_groups": groups}
    optimizer.load_state_dict(saved)
