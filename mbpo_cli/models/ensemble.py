"""The probabilistic ensemble dynamics model of MBPO.

E members predict a Gaussian over `[reward, next_obs - obs]` from `[obs, action]` inputs normalized
by the real data's mean and std. Training follows the official implementation: each member fits its
own bootstrap of the training split, a holdout split (20%, at most 5,000 samples) drives early
stopping with per-member best-weight restore, and the members with the lowest holdout MSE are elites.

The model holds a pack of S seeds in one set of tensors (`mbpo_cli.nn.seeds`: seed-major along dim 0, S E members),
each seed with its own data, normalizer, holdout split, bootstrap, early stopping and elites; a lone run is S = 1.
On the CPU a seed in a pack trains bit for bit as alone (`SeedAdam` steps each seed's rows as a lone tensor), as
long as each seed's share of an elementwise op is a whole number of the CPU's vector blocks (32 floats with AVX-512):
otherwise the lone tensor's last elements take the scalar loop, whose exp and softplus may round differently from the
vector loop they fall in within the pack. Minibatches of 256 rows always are; a holdout or a rollout of another size
may not be, and then differs in the last bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.config.schema import ModelConfig
from mbpo_cli.nn.graphs import CapturedStep, capture_step
from mbpo_cli.nn.mlp import BatchedMLP
from mbpo_cli.nn.optim import SeedAdam
from mbpo_cli.nn.seeds import seed_state, stack_states


@dataclass(frozen=True)
class FitResult:
    """What one retrain did to one seed of the pack."""

    epochs: int
    """Training epochs the seed ran (it stops changing after its own early stop)."""
    train_loss: float
    """Mean training loss of the seed's last epoch."""
    holdout_losses: list[float]
    """Holdout MSE per member after restoring each member's best weights (E values)."""
    elites: list[int]
    """Indices of the elite members within the seed (0 .. E-1), best first."""


SHARED_KEYS = frozenset({"decay"})
"""State-dict keys every seed of a pack shares (config constants); the others are per-seed, seed-major."""


class GaussianEnsemble(nn.Module):
    """E probabilistic (or deterministic) networks with learned log-variance bounds, for each of S seeds.

    A pack of S seeds holds S E members in one `BatchedMLP`, seed-major (`mbpo_cli.nn.seeds`): seed `s` owns members
    `[s E, (s + 1) E)`, its own input normalizer, log-variance bounds, holdout losses and elites. A lone run is S = 1.
    """

    # Buffers (saved in the state dict), declared so that they type as tensors.
    input_mean: torch.Tensor
    """`S x in`: mean of each seed's training split's inputs."""
    input_std: torch.Tensor
    """`S x in`: their std (1 where below 1e-12)."""
    elites: torch.Tensor
    """`S x elites` member indices within each seed (int64, 0 .. E-1), best holdout MSE first."""
    holdout_losses: torch.Tensor
    """`S x E`: holdout MSE per member at the last retrain."""
    decay: torch.Tensor
    """`layers + 1`: the L2 weight-decay coefficient of each layer (shared by every seed)."""

    def __init__(self, obs_dim: int, act_dim: int, config: ModelConfig, seeds: int = 1) -> None:
        super().__init__()
        self.config = config
        self.seeds = seeds
        self.obs_dim = obs_dim
        self.in_dim = obs_dim + act_dim
        self.out_dim = obs_dim + 1
        head = self.out_dim if config.deterministic else 2 * self.out_dim
        self.net = BatchedMLP(seeds * config.ensemble_size, self.in_dim, head, config.hidden, config.layers,
                              activation=nn.SiLU, init="truncated_normal")
        self.max_logvar = nn.Parameter(torch.full((seeds, 1, self.out_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((seeds, 1, self.out_dim), -10.0))
        self.register_buffer("input_mean", torch.zeros(seeds, self.in_dim))
        self.register_buffer("input_std", torch.ones(seeds, self.in_dim))
        self.register_buffer("elites", torch.arange(config.elites).repeat(seeds, 1))
        self.register_buffer("holdout_losses", torch.zeros(seeds, config.ensemble_size))
        decay = torch.tensor(config.weight_decay, dtype=torch.float32)
        self.register_buffer("decay", decay)
        self.graph: CapturedStep[torch.Tensor] | None = None
        self.graph_key: tuple[SeedAdam, torch.Size] | None = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """As nn.Module's, but a lone state saved before the seed axis (a 1-D input mean and std, elites and holdout
        losses) gains its leading seed axis."""
        for name in ("input_mean", "input_std", "elites", "holdout_losses"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.dim() == 1:
                state_dict[prefix + name] = saved.unsqueeze(0)
        super()._load_from_state_dict(state_dict, prefix, *args)

    @classmethod
    def pack(cls, models: Sequence[GaussianEnsemble]) -> GaussianEnsemble:
        """One pack of the lone `models` (same dimensions and config, each built under its own seed), in their
        order: each seed starts exactly as its lone model."""
        first = models[0]
        packed = cls(first.obs_dim, first.in_dim - first.obs_dim, first.config, seeds=len(models))
        packed.to(first.input_mean.device)
        packed.load_state_dict(stack_states([m.state_dict() for m in models], SHARED_KEYS))
        return packed

    def seed(self, seed: int) -> GaussianEnsemble:
        """Seed `seed`'s lone model (a copy)."""
        lone = GaussianEnsemble(self.obs_dim, self.in_dim - self.obs_dim, self.config)
        lone.to(self.input_mean.device)
        lone.load_state_dict(seed_state(self.state_dict(), seed, self.seeds, SHARED_KEYS))
        return lone

    # -- prediction -------------------------------------------------------------------------------

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """`S x N x in` -> the same, each seed's standardized by its fitted mean and std."""
        return (inputs - self.input_mean.unsqueeze(1)) / self.input_std.unsqueeze(1)

    def _head(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw outputs `S M x B x head` (seed-major) -> mean and bounded log-variance `S M x B x out`."""
        if self.config.deterministic:
            return raw, None
        mean, logvar = raw.split(self.out_dim, dim=-1)
        per_seed = logvar.reshape(self.seeds, -1, self.out_dim)  # S x (M B) x out: a view, as the bounds broadcast
        per_seed = self.max_logvar - F.softplus(self.max_logvar - per_seed)
        per_seed = self.min_logvar + F.softplus(per_seed - self.min_logvar)
        return mean, per_seed.view(logvar.shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalized inputs `S E x B x in` -> mean and log-variance `S E x B x out` (None if deterministic)."""
        return self._head(self.net(x))

    def _pack_members(self, members: torch.Tensor) -> torch.Tensor:
        """Each seed's member indices `S x M` (0 .. E-1) -> the pack's `S M` (seed `s`'s offset by `s E`)."""
        offsets = torch.arange(self.seeds, device=members.device).unsqueeze(1) * self.config.ensemble_size
        return (members + offsets).flatten()

    @torch.no_grad()
    def sample(
        self, obs: torch.Tensor, act: torch.Tensor, generators: Sequence[torch.Generator], members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One model step for N states of each seed (`S x N x obs`, `S x N x act`): reward `S x N` and next
        observation `S x N x obs`.

        Each sample is assigned a uniformly random member of its seed's `members` (`S x M` indices) through a random
        permutation split into M equal shares, so only that member's forward is computed and the batched matmul
        keeps a static `S M x ceil(N/M) x in` shape (padded with repeated states, also when N < M / 2). The output is
        sampled from the member's Gaussian (its mean when the model is deterministic). Seed `s` draws from
        `generators[s]` exactly what a lone model draws.
        """
        s, n, m = obs.shape[0], obs.shape[1], members.shape[1]
        share = math.ceil(n / m)
        orders = []
        for generator in generators:
            order = torch.randperm(n, generator=generator, device=obs.device)
            pad = share * m - n
            if pad > 0:
                order = torch.cat([order, order.repeat(math.ceil(pad / n))[:pad]])
            orders.append(order)
        order = torch.stack(orders)
        x = self.normalize(torch.cat([obs, act], dim=-1))
        x = x.gather(1, order.unsqueeze(-1).expand(-1, -1, self.in_dim)).view(s * m, share, self.in_dim)
        mean, logvar = self._head(self.net.forward_members(x, self._pack_members(members)))
        if logvar is not None:
            noise = torch.stack([torch.randn((m, share, self.out_dim), generator=generator, device=mean.device,
                                             dtype=mean.dtype) for generator in generators])
            mean = mean + noise.flatten(0, 1) * torch.exp(0.5 * logvar)
        out = torch.empty(s, n, self.out_dim, device=obs.device, dtype=mean.dtype)
        out.scatter_(1, order[:, :n].unsqueeze(-1).expand(-1, -1, self.out_dim),
                     mean.reshape(s, share * m, self.out_dim)[:, :n])
        return out[..., 0], obs + out[..., 1:]

    @torch.no_grad()
    def predict_members(
        self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every member of each seed's `members` (`S x M` indices) on the seed's N states (`S x N x obs`,
        `S x N x act`): mean and log-variance `S x M x N x out` of `[reward, next_obs - obs]` (log-variance None
        when the model is deterministic)."""
        s, m = members.shape
        x = self.normalize(torch.cat([obs, act], dim=-1))
        x = x.unsqueeze(1).expand(-1, m, -1, -1).flatten(0, 1)
        mean, logvar = self._head(self.net.forward_members(x, self._pack_members(members)))
        return mean.unflatten(0, (s, m)), None if logvar is None else logvar.unflatten(0, (s, m))

    @torch.no_grad()
    def mean_step(
        self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' average prediction, no sampling: reward `S x N` and next observation `S x N x obs`."""
        mean, _ = self.predict_members(obs, act, members)
        out = mean.mean(dim=1)
        return out[..., 0], obs + out[..., 1:]

    # -- training ---------------------------------------------------------------------------------

    def member_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's fit on normalized inputs `S E x B x in` and targets `S E x B x out`: `S E`.

        Gaussian negative log-likelihood (MSE when deterministic) averaged over batch and dims.
        """
        mean, logvar = self(x)
        if logvar is None:
            return (mean - y).pow(2).mean(dim=(1, 2))
        return ((mean - y).pow(2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2))

    def bound_penalty(self) -> torch.Tensor:
        """Each seed's log-variance bound penalty `S` (zeros when deterministic)."""
        if self.config.deterministic:
            return torch.zeros(self.seeds, device=self.max_logvar.device)
        return 0.01 * (self.max_logvar.sum(dim=(1, 2)) - self.min_logvar.sum(dim=(1, 2)))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The pack's training loss on normalized inputs `S E x B x in` and targets `S E x B x out` (a scalar)."""
        return self.losses(x, y)[0]

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pack's training loss (a scalar) and each seed's share of it (`S`, detached).

        The members' fits (`member_losses`) summed over every member of every seed, plus the log-variance bound
        penalty: each seed's gradient is its own lone loss's. The per-layer L2 weight decay is not in it: the
        optimizer applies it (`make_model_optimizer`), the same gradient as `decay * |W|^2 / 2` in the loss.
        """
        members = self.member_losses(x, y)
        total = members.sum()
        if not self.config.deterministic:
            total = total + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        with torch.no_grad():
            return total, members.view(self.seeds, -1).sum(dim=1) + self.bound_penalty()

    def train_step(self, optimizer: SeedAdam, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One gradient step on normalized inputs `S E x B x in`, targets `S E x B x out`; each seed's loss `S`,
        detached.

        Runs as the captured CUDA graph when one exists for this optimizer and this minibatch shape and every seed is
        active (the returned losses are then valid until the next step), else eagerly.
        """
        if self.graph is not None and self.graph_key == (optimizer, x.shape) and len(optimizer.active) == self.seeds:
            return self.graph(x, y)
        return self._eager_step(optimizer, x, y)

    def _eager_step(self, optimizer: SeedAdam, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, seed_losses = self.losses(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return seed_losses

    def use_cuda_graph(self, optimizer: SeedAdam, x: torch.Tensor, y: torch.Tensor) -> str:
        """Capture the training step for minibatches shaped like `x`, `y` (CUDA only); says how steps will run.

        The model's and the optimizer's state are left as they were. Optimizer states restored from a
        checkpoint must be loaded before this call.
        """
        self.graph, mode = capture_step(lambda a, b: self._eager_step(optimizer, a, b), [x, y], self, [optimizer])
        self.graph_key = (optimizer, x.shape)
        return mode

    @torch.no_grad()
    def holdout_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member MSE of the mean on each seed's normalized inputs `S x H x in`, targets `S x H x out` ->
        `S x E`."""
        e = self.config.ensemble_size
        mean, _ = self(x.unsqueeze(1).expand(-1, e, -1, -1).flatten(0, 1))
        target = y.unsqueeze(1).expand(-1, e, -1, -1).flatten(0, 1)
        return (mean - target).pow(2).mean(dim=(1, 2)).view(self.seeds, e)

    def fit_normalizer(self, inputs: torch.Tensor) -> None:
        """Set each seed's input mean and std from its raw inputs `S x N x in` (a std below 1e-12 becomes 1)."""
        for s, seed_inputs in enumerate(inputs):
            self.input_mean[s].copy_(seed_inputs.mean(dim=0))
            std = seed_inputs.std(dim=0, unbiased=False)
            self.input_std[s].copy_(torch.where(std < 1e-12, torch.ones_like(std), std))


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
    optimizer: SeedAdam,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    generators: Sequence[torch.Generator],
    max_seconds: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[FitResult]:
    """Train each seed of `model` on its raw inputs `S x N x in` and targets `S x N x out` until its holdout stops
    improving; what each seed's retrain did, in seed order.

    Seed `s` draws its holdout split, bootstrap and epoch orders from `generators[s]` (what a lone fit draws), sets
    its normalizer from its training split, stops on its own patience and keeps its members' best weights and its
    elites. A seed that has stopped stops changing (mask, not fork): the pack's minibatch steps go on computing its
    members' gradients, but `SeedAdam` no longer steps its rows (weights, log-variance bounds, moments and step
    count stay), it draws nothing more and its best weights are no longer updated.

    `max_seconds` ends every seed's training after the first epoch that ends past it (the official `max_model_t`;
    the result then depends on the machine's speed). `stop` is asked after every epoch; when it says True,
    `FitCancelled` is raised.
    """
    cfg = model.config
    x_train, y_train, x_hold, y_hold = holdout_split(model, inputs, targets, generators)
    n_train = x_train.shape[1]
    bootstrap = torch.stack([torch.randint(n_train, (cfg.ensemble_size, n_train), generator=g, device=inputs.device)
                             for g in generators])
    best = MemberBest(model)
    optimizer.active = set(range(model.seeds))
    since = [0] * model.seeds
    epochs = [0] * model.seeds
    train_losses = [math.nan] * model.seeds
    order = bootstrap
    epoch = 0
    started = time.perf_counter()
    try:
        while optimizer.active and (cfg.max_epochs is None or epoch < cfg.max_epochs):
            order = epoch_order(bootstrap, order, generators, optimizer.active)
            epoch_losses = train_epoch(model, optimizer, x_train, y_train, order)
            epoch += 1
            improved = best.update(model.holdout_mse(x_hold, y_hold), optimizer.active)
            for s in sorted(optimizer.active):
                epochs[s], train_losses[s] = epoch, epoch_losses[s]
                since[s] = 0 if improved[s] else since[s] + 1
            if stop is not None and stop():
                raise FitCancelled
            timed_out = max_seconds is not None and time.perf_counter() - started > max_seconds
            optimizer.active -= {s for s in optimizer.active if since[s] > cfg.patience or timed_out}
    finally:
        optimizer.active = set(range(model.seeds))
    best.restore()
    losses = model.holdout_mse(x_hold, y_hold)
    model.holdout_losses.copy_(losses)
    results = []
    for s, seed_losses in enumerate(losses):
        ranking = seed_losses.argsort()
        model.elites[s].copy_(ranking[: cfg.elites])
        results.append(FitResult(epochs=epochs[s], train_loss=train_losses[s], holdout_losses=seed_losses.tolist(),
                                 elites=ranking[: cfg.elites].tolist()))
    return results


def holdout_split(model: GaussianEnsemble, inputs: torch.Tensor, targets: torch.Tensor,
                  generators: Sequence[torch.Generator]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each seed's random split of its raw inputs `S x N x in` and targets `S x N x out` into training and holdout
    (`holdout_ratio`, at most `max_holdout`), drawn from `generators[s]`; sets each seed's normalizer from its
    training split. Returns the normalized training inputs `S x N_train x in` and their targets, then the holdout's
    (the training split's when the holdout is empty)."""
    cfg = model.config
    n = inputs.shape[1]
    n_holdout = min(int(n * cfg.holdout_ratio), cfg.max_holdout)
    if n - n_holdout < 1:
        raise ValueError(f"need at least 2 samples to train the model, got {n}")
    perm = torch.stack([torch.randperm(n, generator=g, device=inputs.device) for g in generators])
    train_idx, holdout_idx = perm[:, n_holdout:], perm[:, :n_holdout]

    def rows(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return data.gather(1, idx.unsqueeze(-1).expand(-1, -1, data.shape[-1]))

    train_inputs = rows(inputs, train_idx)
    model.fit_normalizer(train_inputs)
    x_train, y_train = model.normalize(train_inputs), rows(targets, train_idx)
    if n_holdout == 0:
        return x_train, y_train, x_train, y_train
    return x_train, y_train, model.normalize(rows(inputs, holdout_idx)), rows(targets, holdout_idx)


def epoch_order(bootstrap: torch.Tensor, previous: torch.Tensor, generators: Sequence[torch.Generator],
                active: Collection[int]) -> torch.Tensor:
    """Each seed's order `S x E x N` of its bootstrap `S x E x N` for the next epoch: a fresh random one for each
    seed in `active` (drawn from its generator), the `previous` one for a seed that has stopped (it draws nothing)."""
    e, n = bootstrap.shape[1:]
    orders = []
    for s, generator in enumerate(generators):
        if s in active:
            shuffle = torch.rand(e, n, generator=generator, device=bootstrap.device).argsort(dim=1)
            orders.append(bootstrap[s].gather(1, shuffle))
        else:
            orders.append(previous[s])
    return torch.stack(orders)


def train_epoch(model: GaussianEnsemble, optimizer: SeedAdam, x: torch.Tensor, y: torch.Tensor,
                order: torch.Tensor) -> list[float]:
    """One epoch: each member of each seed steps through its order `S x E x N` of its seed's training inputs
    `S x N x in` and targets `S x N x out`, `batch_size` at a time. Each seed's mean training loss (one device
    read)."""
    s, _, n = order.shape
    seed = torch.arange(s, device=x.device).view(s, 1, 1)
    total = torch.zeros(s, device=x.device)
    batches = 0
    for start in range(0, n, model.config.batch_size):
        idx = order[:, :, start : start + model.config.batch_size]
        total += model.train_step(optimizer, x[seed, idx].flatten(0, 1), y[seed, idx].flatten(0, 1))
        batches += 1
    return [v / batches for v in total.tolist()]


class MemberBest:
    """Each member's best holdout loss so far and its network weights then: early stopping with per-member
    best-weight restore."""

    def __init__(self, model: GaussianEnsemble) -> None:
        self.improvement = model.config.improvement
        self.params = list(model.net.parameters())
        self.saved = [p.detach().clone() for p in self.params]
        self.losses = torch.full((model.seeds, model.config.ensemble_size), math.inf, device=model.input_mean.device)
        """`S x E`: the best holdout MSE of each member."""

    def update(self, losses: torch.Tensor, active: Collection[int]) -> list[bool]:
        """Keep the weights of each member of an `active` seed whose holdout MSE (`S x E`) improved by more than
        `improvement` (relative; any finite loss improves on none); whether any of each seed's did."""
        improved = (self.losses - losses) / self.losses > self.improvement
        improved |= torch.isinf(self.losses) & torch.isfinite(losses)
        if len(active) < improved.shape[0]:
            improved[[s for s in range(improved.shape[0]) if s not in active]] = False
        self.losses = torch.where(improved, losses, self.losses)
        members = improved.flatten()
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params, strict=True):
                saved[members] = p[members]
        return improved.any(dim=1).tolist()

    def restore(self) -> None:
        """Every member back to its best weights."""
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params, strict=True):
                p.copy_(saved)


def make_model_optimizer(model: GaussianEnsemble) -> SeedAdam:
    """Fused Adam (`SeedAdam`: each seed stepped as alone) over the networks and the log-variance bounds, each
    layer's weights in a parameter group whose `weight_decay` is the layer's L2 coefficient (biases and bounds
    undecayed).

    Adam's coupled weight decay adds `decay * W` to the gradient before the moment updates, exactly the gradient
    of the official implementation's `decay * |W|^2 / 2` loss term, in one fused kernel instead of extra ops per
    step. The flattened parameter order is `model.parameters()`'s, as in a single group.
    """
    weights = list(model.net.weights)
    decayed = {id(w) for w in weights}
    groups: list[dict] = [{"params": [w], "weight_decay": float(d)} for w, d in zip(weights, model.decay.tolist(),
                                                                                    strict=True)]
    groups.append({"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0})
    return SeedAdam(groups, seeds=model.seeds, lr=model.config.lr)


def load_model_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a model optimizer's saved state, also from a checkpoint written before the per-layer groups (one group
    holding every parameter in the same flattened order): its moments are kept, the groups' settings are this
    optimizer's."""
    groups = optimizer.state_dict()["param_groups"]
    if len(saved["param_groups"]) != len(groups):
        saved = {"state": saved["state"], "param_groups": groups}
    optimizer.load_state_dict(saved)
