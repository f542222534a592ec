"""A learned termination function: a classifier of next observations, trained on real transitions.

Terminations are rare (one per episode), so the binary cross-entropy is class-weighted: each class weighs
`N / (2 N_class)` in the training split, so terminal and non-terminal transitions count equally. The
holdout split is stratified (the same fraction of each class) and drives early stopping; its accuracy, its
recall on terminal transitions and its false-positive rate on the others are what a retrain reports, with the
probability threshold in use. Until the data holds a terminal transition the classifier predicts that nothing
terminates.

The threshold (`done_model.threshold`, None by default) is chosen on the holdout after each retrain, not fixed at
0.5. Class weighting makes a 0.5 cut on the weighted model flag a state once its probability of terminating passes
about the base rate (a few per cent): since nearly every transition is non-terminal, even a small false-positive
rate makes many false terminations, and each ends a model branch early and zeroes a bootstrap. On the random-action
CartPole and Hopper episodes of tests/models/test_done.py (4,000 steps to train on, 2,000 of another seed to
judge), the 0.5 cut made about one false termination for every two true ones.

`fbeta_threshold` picks the cut that maximizes the F-beta score of the terminal class on the holdout, with beta =
`THRESHOLD_BETA` = 2: `5 TP / (5 TP + 4 FN + FP)`, in which a missed termination counts as much as four false
ones. Both errors misstate one bootstrap, but a missed termination also rolls the branch on from a state the task
ends in and tells the agent that failing pays, which the policy can exploit, while a false one only makes it wary
near the boundary. On those episodes the F2 cut had 43% (Hopper) and 72% (CartPole) fewer false terminations than
0.5, for 1 and 3 more missed ones in about 95. F1 (beta = 1) gave up a fifth of Hopper's terminal transitions
there; balanced accuracy weighs each class's error rate equally, the class-weighted loss's own criterion, whose
optimum is about the 0.5 cut; plain accuracy favours predicting that nothing terminates wherever the classes
overlap. The holdout that chooses the cut also measures it, so its metrics are slightly optimistic.

`holdout_threshold` guards that choice on a small holdout (early retrains, a weak classifier): with fewer than
`MIN_HOLDOUT_TERMINAL` held-out terminal transitions the cut stays 0.5, and it never goes below 0.5. F-beta on a
handful of terminal transitions chases each one: a single one ranked low among weak early logits makes the best
F2 flag everything above it (a tiny CartPole run chose 0.46 and flagged 72% of its held-out non-terminal states,
against 4% at 0.5). The class-weighted 0.5 cut already leans toward finding terminations; the holdout is there
to raise it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_cli.config.schema import DoneModelConfig
from mbpo_cli.nn.mlp import BatchedMLP
from mbpo_cli.nn.seeds import seed_optimizer_state, seed_state, stack_optimizer_states, stack_states


@dataclass(frozen=True)
class DoneFit:
    """What one retrain of the classifier did (NaN metrics when a class is missing from the holdout)."""

    epochs: int
    terminal: int
    """Terminal transitions in the data."""
    holdout_accuracy: float
    holdout_recall: float
    """Fraction of the held-out terminal transitions predicted terminal."""
    holdout_fpr: float
    """False-positive rate: fraction of the held-out non-terminal transitions predicted terminal."""
    threshold: float
    """The probability above which a next state terminates, after this retrain."""


SHARED_KEYS: frozenset[str] = frozenset()
"""State-dict keys every seed of a pack shares (none: every tensor is per-seed, seed-major)."""


class DoneClassifier(nn.Module):
    """`next_obs S x N x D -> P(terminated) S x N`, an MLP on standardized inputs for each of S seeds.

    A pack of S seeds holds S one-member networks in one `BatchedMLP`, seed-major (`mbpo_cli.nn.seeds`), each with
    its own normalizer, threshold and trained flag. A lone run is S = 1.
    """

    # Buffers (saved in the state dict), declared so that they type as tensors.
    input_mean: torch.Tensor
    """`S x D`: mean of each seed's training split's next observations."""
    input_std: torch.Tensor
    """`S x D`: their std (1 where below 1e-12)."""
    trained: torch.Tensor
    """`S` bool: set once the seed's classifier was fitted on data holding a terminal transition."""
    threshold_logit: torch.Tensor
    """`S`: a next state terminates when its logit exceeds this (`done_model.threshold` as a logit, or the cut
    chosen on the seed's last retrain's holdout)."""

    def __init__(self, obs_dim: int, config: DoneModelConfig, seeds: int = 1) -> None:
        super().__init__()
        self.config = config
        self.seeds = seeds
        self.obs_dim = obs_dim
        self.net = BatchedMLP(seeds, obs_dim, 1, config.hidden, config.layers, activation=nn.SiLU)
        self.register_buffer("input_mean", torch.zeros(seeds, obs_dim))
        self.register_buffer("input_std", torch.ones(seeds, obs_dim))
        self.register_buffer("trained", torch.zeros(seeds, dtype=torch.bool))
        self.register_buffer("threshold_logit", torch.full((seeds,), self.fixed_threshold_logit()))

    def fixed_threshold_logit(self) -> float:
        """`done_model.threshold` as a logit; 0.0 (a probability of 0.5) when the holdout chooses it."""
        fixed = self.config.threshold
        return 0.0 if fixed is None else math.log(fixed / (1.0 - fixed))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """As nn.Module's, but a state saved before the holdout chose the threshold (whose run's config held it,
        0.5 by default) loads with that fixed threshold, 0.5 when this config leaves it to the holdout; and a lone
        state saved before the seed axis (a 1-D input mean and std, a scalar flag and threshold) gains its leading
        seed axis."""
        default = torch.full((self.seeds,), self.fixed_threshold_logit(), device=self.threshold_logit.device)
        state_dict.setdefault(prefix + "threshold_logit", default)
        for name, lone_dims in (("input_mean", 1), ("input_std", 1), ("trained", 0), ("threshold_logit", 0)):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.dim() == lone_dims:
                state_dict[prefix + name] = saved.unsqueeze(0)
        super()._load_from_state_dict(state_dict, prefix, *args)

    @classmethod
    def pack(cls, models: Sequence[DoneClassifier]) -> DoneClassifier:
        """One pack of the lone `models` (same dimension and config, each built under its own seed), in their order:
        each seed starts exactly as its lone classifier."""
        first = models[0]
        packed = cls(first.obs_dim, first.config, seeds=len(models)).to(first.input_mean.device)
        packed.load_state_dict(stack_states([m.state_dict() for m in models], SHARED_KEYS))
        return packed

    def seed(self, seed: int) -> DoneClassifier:
        """Seed `seed`'s lone classifier (a copy)."""
        lone = DoneClassifier(self.obs_dim, self.config).to(self.input_mean.device)
        lone.load_state_dict(seed_state(self.state_dict(), seed, self.seeds, SHARED_KEYS))
        return lone

    def logits(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Logits `S x N` of termination for each seed's raw next observations `S x N x D`."""
        x = (next_obs - self.input_mean.unsqueeze(1)) / self.input_std.unsqueeze(1)
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def forward(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Termination `S x N` (bool) for each seed's next observations `S x N x D`: probability above the seed's
        threshold.

        Non-finite observations terminate; in a seed that has not yet seen a terminal transition, nothing else does.
        """
        finite = torch.isfinite(next_obs).all(dim=-1)
        if not bool(self.trained.any()):
            return ~finite
        flagged = self.logits(torch.nan_to_num(next_obs)) > self.threshold_logit.unsqueeze(1)
        return ~finite | (flagged & self.trained.unsqueeze(1))


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


THRESHOLD_BETA = 2.0
"""beta of the F-beta score the threshold maximizes on the holdout: a missed termination weighs beta^2 = 4 false
ones (see the module's docstring)."""


def fbeta_threshold(logits: torch.Tensor, actual: torch.Tensor, beta: float = THRESHOLD_BETA) -> float:
    """The logit cut that maximizes the F-beta score of the terminal class over held-out `logits` `N` and termination
    flags `actual` `N` (bool): the midpoint between the lowest logit it flags and the next lower one (the first of
    equally good cuts, which flags fewest). 0.0 (probability 0.5) when no flag is set.

    Flagging the k highest logits finds `TP_k` of the P terminal transitions: F-beta =
    `(1 + b^2) TP_k / ((1 + b^2) TP_k + b^2 (P - TP_k) + (k - TP_k))`. A cut can only fall between two different
    logits.
    """
    positives = int(actual.sum())
    if positives == 0:
        return 0.0
    order = torch.argsort(logits, descending=True)
    ranked, hits = logits[order], actual[order].float().cumsum(0)
    flagged = torch.arange(1, ranked.shape[0] + 1, device=logits.device)
    weight = beta * beta
    score = (1.0 + weight) * hits / ((1.0 + weight) * hits + weight * (positives - hits) + (flagged - hits))
    cuttable = torch.ones_like(actual)
    cuttable[:-1] = ranked[:-1] > ranked[1:]
    best = int(torch.where(cuttable, score, -1.0).argmax())
    if best + 1 == ranked.shape[0]:
        return float(ranked[best]) - 1.0  # every transition flagged: a cut below the lowest logit
    return float((ranked[best] + ranked[best + 1]) / 2.0)


def _weighted_bce(logits: torch.Tensor, done: torch.Tensor, pos_weight: float, neg_weight: float) -> torch.Tensor:
    weights = torch.where(done > 0.5, pos_weight, neg_weight)
    return F.binary_cross_entropy_with_logits(logits, done, weight=weights)


MIN_HOLDOUT_TERMINAL = 10
"""Held-out terminal transitions needed before the holdout chooses the threshold (fewer: 0.5)."""


def holdout_threshold(logits: torch.Tensor, actual: torch.Tensor) -> float:
    """The logit cut a retrain keeps when the holdout chooses it: `fbeta_threshold` over held-out `logits` `N` and
    termination flags `actual` `N` (bool), but never below 0.0 (probability 0.5), and 0.0 when fewer than
    `MIN_HOLDOUT_TERMINAL` of them are terminal (see the module's docstring)."""
    if int(actual.sum()) < MIN_HOLDOUT_TERMINAL:
        return 0.0
    return max(0.0, fbeta_threshold(logits, actual))


def fit_done_classifier(model: DoneClassifier, optimizer: torch.optim.Optimizer, next_obs: torch.Tensor,
                        done: torch.Tensor, generators: Sequence[torch.Generator]) -> list[DoneFit]:
    """Train each seed on its real next observations `S x N x D` and termination flags `S x N` until its holdout
    loss stops improving (`fit_seed`, seed `s` drawing from `generators[s]`); what each seed's retrain did.

    The seeds are fitted one after the other, each as a lone classifier with its own rows of the networks and its own
    Adam state, then put back into the pack (fork, not mask): their stratified splits hold as many samples as their
    data holds terminal transitions, which differ between seeds, so their minibatches cannot share a batched step.
    The pack's optimizer (never stepped itself) holds each seed's Adam state, its step count one per seed (`S`).
    """
    params = list(model.seed(0).net.parameters())
    packed = optimizer.state_dict()
    lone, states, fits = [], [], []
    for s, generator in enumerate(generators):
        classifier = model.seed(s)
        seed_optimizer = make_done_optimizer(classifier)
        seed_optimizer.load_state_dict(seed_optimizer_state(packed, s, model.seeds))
        fits.append(fit_seed(classifier, seed_optimizer, next_obs[s], done[s], generator))
        lone.append(classifier)
        states.append(seed_optimizer.state_dict())
    model.load_state_dict(stack_states([c.state_dict() for c in lone], SHARED_KEYS))
    if any(state["state"] for state in states):
        optimizer.load_state_dict(stack_optimizer_states([per_seed_steps(state, params) for state in states]))
    return fits


def per_seed_steps(state: dict[str, Any], params: Sequence[torch.Tensor]) -> dict[str, Any]:
    """A lone Adam state with its step counts as 1-element tensors (so that they stack into one per seed) and fresh
    entries (step 0, zero moments: what Adam starts from) for parameters it has not stepped yet."""
    entries = {}
    for index, param in enumerate(params):
        entry = state["state"].get(index) or {"step": torch.zeros((), device="cpu"), "exp_avg": torch.zeros_like(param),
                                              "exp_avg_sq": torch.zeros_like(param)}
        entries[index] = {**entry, "step": entry["step"].reshape(1)}
    return {"state": entries, "param_groups": state["param_groups"]}


def fit_seed(model: DoneClassifier, optimizer: torch.optim.Optimizer, next_obs: torch.Tensor, done: torch.Tensor,
             generator: torch.Generator) -> DoneFit:
    """Train a lone classifier (a pack of one) on real next observations `N x D` and termination flags `N` until the
    holdout loss stops improving.

    Keeps the best holdout weights, then chooses the threshold on the holdout (`holdout_threshold`) unless
    `done_model.threshold` fixes it; returns the epochs run, the holdout accuracy, terminal recall and
    false-positive rate at that threshold, and the threshold.
    """
    cfg = model.config
    terminal = int((done > 0.5).sum())
    if terminal == 0:
        return DoneFit(0, 0, math.nan, math.nan, math.nan, float(torch.sigmoid(model.threshold_logit[0])))
    train_idx, hold_idx = _split(done, cfg.holdout_ratio, generator)
    x, y = next_obs[train_idx], done[train_idx]
    model.input_mean[0].copy_(x.mean(dim=0))
    std = x.std(dim=0, unbiased=False)
    model.input_std[0].copy_(torch.where(std < 1e-12, torch.ones_like(std), std))
    n, n_pos = y.shape[0], float((y > 0.5).sum())
    pos_weight, neg_weight = n / (2.0 * max(n_pos, 1.0)), n / (2.0 * max(n - n_pos, 1.0))
    x_hold, y_hold = next_obs[hold_idx], done[hold_idx]

    def holdout_loss() -> float:
        with torch.no_grad():
            return float(_weighted_bce(model.logits(x_hold.unsqueeze(0))[0], y_hold, pos_weight, neg_weight))

    best, best_state, since, epoch = holdout_loss(), _copy(model), 0, 0
    while epoch < cfg.max_epochs and since <= cfg.patience:
        order = torch.randperm(n, generator=generator, device=x.device)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = _weighted_bce(model.logits(x[idx].unsqueeze(0))[0], y[idx], pos_weight, neg_weight)
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
    actual = y_hold > 0.5
    with torch.no_grad():
        if cfg.threshold is None:
            model.threshold_logit.fill_(holdout_threshold(model.logits(x_hold.unsqueeze(0))[0], actual))
        else:
            model.threshold_logit.fill_(model.fixed_threshold_logit())
    accuracy, recall, fpr = holdout_rates(model(x_hold.unsqueeze(0))[0], actual)
    return DoneFit(epoch, terminal, accuracy, recall, fpr, float(torch.sigmoid(model.threshold_logit[0])))


def holdout_rates(predicted: torch.Tensor, actual: torch.Tensor) -> tuple[float, float, float]:
    """Accuracy, recall (of the terminal transitions, the fraction predicted terminal) and false-positive rate (of
    the others, the fraction predicted terminal) of predictions `N` (bool) against `actual` `N` (bool); NaN for a
    rate over an empty class."""
    return _fraction(predicted == actual), _fraction(predicted[actual]), _fraction(predicted[~actual])


def _fraction(flags: torch.Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else math.nan


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_done_optimizer(model: DoneClassifier) -> torch.optim.Adam:
    """Adam over the classifier's weights."""
    return torch.optim.Adam(model.net.parameters(), lr=model.config.lr)
