"""The batched MLP with layer normalization and dropout of DHMBPO's model and critics (mbpo_cli.nn.normed_mlp)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from mbpo_cli.nn.normed_mlp import NormedEnsembleMLP, bernoulli_successes, dropout_masks, sampled_masks


def test_members_are_independent_networks_with_their_norms_and_masks() -> None:
    """Member m of the batched forward equals its own network computed layer by layer: layer norm (its epsilon) on
    the input of every layer after the first, the dropout mask after each hidden layer, then SiLU."""
    torch.manual_seed(0)
    net = NormedEnsembleMLP(3, 5, 2, hidden=8, layers=2, norm_eps=[0.5, 1e-3], dropout=[0.2, 0.0])
    x = torch.randn(3, 7, 5)
    masks = dropout_masks(torch.rand(3 * 7 * 8 * 2), net.mask_shapes(7), net.dropout)
    assert masks[1] is None and masks[0] is not None
    got = net(x, masks)
    for m in range(3):
        h = x[m] @ net.weights[0][m] + net.biases[0][m]
        h = torch.nn.functional.silu(h * masks[0][m])
        h = torch.nn.functional.layer_norm(h, (8,), eps=0.5) @ net.weights[1][m] + net.biases[1][m]
        h = torch.nn.functional.silu(h)
        h = torch.nn.functional.layer_norm(h, (8,), eps=1e-3) @ net.weights[2][m] + net.biases[2][m]
        assert torch.allclose(got[m], h, atol=1e-5)
    assert torch.allclose(net(x[1:2], members=torch.tensor([1])), net(x)[1:2], atol=1e-6)
    assert masks[0].unique().tolist() == pytest.approx([0.0, 1 / 0.8])


def test_zero_output_starts_at_zero() -> None:
    net = NormedEnsembleMLP(2, 4, 1, hidden=8, layers=2, norm_eps=[1e-5, 1e-5], dropout=[0.0, 0.0], zero_output=True)
    assert torch.equal(net(torch.randn(2, 5, 4)), torch.zeros(2, 5, 1))


def test_sampled_masks_drop_each_unit_independently_at_the_rate() -> None:
    """The geometric-gap sampler gives Bernoulli(p) drops: the count is binomial, the positions uniform, the gaps
    geometric; the same generator state gives the same masks."""
    n, p = 400_000, 0.005
    successes = bernoulli_successes(n, p, torch.Generator().manual_seed(0), torch.device("cpu"))
    count = successes.numel()
    assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert bool((successes[1:] > successes[:-1]).all()) and int(successes[0]) >= 0 and int(successes[-1]) < n
    bins = torch.bincount(successes * 20 // n, minlength=20)
    assert stats.chisquare(bins.numpy()).pvalue > 1e-3  # uniform over the positions
    gaps = (successes[1:] - successes[:-1] - 1).numpy()
    assert abs(gaps.mean() - (1 - p) / p) < 5 * math.sqrt((1 - p) / p**2 / len(gaps))

    shapes, rates = [(4, 100, 50), (4, 100, 50), (4, 100, 50)], [0.3, 0.0, 0.01]
    first = sampled_masks(shapes, rates, torch.Generator().manual_seed(1), torch.device("cpu"))
    again = sampled_masks(shapes, rates, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert first[1] is None and all(a is None or torch.equal(a, b) for a, b in zip(first, again, strict=True))
    dropped = [float((m == 0).float().mean()) for m in first if m is not None]
    assert dropped[0] == pytest.approx(0.3, abs=0.01) and dropped[1] == pytest.approx(0.01, abs=0.003)
    assert first[0] is not None and first[0].unique().tolist() == pytest.approx([0.0, 1 / 0.7])
