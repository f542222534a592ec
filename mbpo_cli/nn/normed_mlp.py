"""Batched multilayer perceptrons with layer normalization and dropout: E networks as `E x in x out` weights.

DHMBPO's dynamics model (8 members) and critic ensemble (5 members) are both this module. As `BatchedMLP`, one
`torch.baddbmm` per layer evaluates every member at once. Before every layer but the first, its input may be
layer-normalized (no affine parameters, a per-layer epsilon); after every hidden layer's linear map, before its
SiLU, it may be dropped out. Dropout is explicit: the caller passes one multiplicative mask per hidden layer (see
`dropout_masks`), so a forward pass is a pure function of its inputs and its random draws come from whichever
generator the caller chose (or from noise drawn outside a captured CUDA graph).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

LEAKY_RELU_GAIN = math.sqrt(2.0 / (1.0 + 0.01**2))
"""Kaiming's gain for a leaky ReLU of slope 0.01 (PyTorch's default), the public DHMBPO code's initialization."""

Masks = Sequence[torch.Tensor | None]
"""One multiplicative dropout mask per hidden layer (`E x B x hidden`, entries 0 or 1 / (1 - p)), or None."""


class NormedEnsembleMLP(nn.Module):
    """E parallel MLPs `in -> hidden x layers -> out` with SiLU activations.

    Weights are `E x in x out`, biases `E x 1 x out`. `norm_eps[i]` (None: no normalization) is the layer-norm
    epsilon on the input of layer `i + 2` (the second hidden layer, ..., the output layer); `dropout[i]` is the
    dropout rate after hidden layer `i + 1`. Weights are Kaiming-normal per member (fan-in), biases normal with std
    `1 / (2 sqrt(fan_in))`; `zero_output` starts the output layer at zero (a critic that predicts 0 everywhere).
    """

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden: int, layers: int,
                 norm_eps: Sequence[float | None], dropout: Sequence[float], zero_output: bool = False) -> None:
        super().__init__()
        if len(norm_eps) != layers or len(dropout) != layers:
            raise ValueError(f"need {layers} layer-norm epsilons and dropout rates, got {len(norm_eps)} and "
                             f"{len(dropout)}")
        dims = [in_dim, *([hidden] * layers), out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(dims):
            weight = torch.randn(members, fan_in, fan_out) * (LEAKY_RELU_GAIN / math.sqrt(fan_in))
            bias = torch.randn(members, 1, fan_out) / (2.0 * math.sqrt(fan_in))
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        if zero_output:
            with torch.no_grad():
                self.weights[-1].zero_()
                self.biases[-1].zero_()
        self.members, self.hidden, self.layers = members, hidden, layers
        self.norm_eps = tuple(norm_eps)
        self.dropout = tuple(float(p) for p in dropout)

    def forward(self, x: torch.Tensor, masks: Masks | None = None, params: Sequence[torch.Tensor] | None = None,
                members: torch.Tensor | None = None) -> torch.Tensor:
        """`M x B x in` -> `M x B x out`.

        `masks`: dropout masks per hidden layer (None: no dropout, the evaluation mode). `params` (weights, then
        biases) replaces the module's own, e.g. detached copies; `members` (M indices) evaluates those members only.
        """
        n = len(self.weights)
        weights = list(self.weights) if params is None else list(params[:n])
        biases = list(self.biases) if params is None else list(params[n:])
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            eps = self.norm_eps[i - 1] if i > 0 else None
            if eps is not None:
                x = F.layer_norm(x, (x.shape[-1],), eps=eps)
            if members is not None:
                w, b = w[members], b[members]
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                mask = None if masks is None else masks[i]
                if mask is not None:
                    x = x * mask
                x = F.silu(x)
        return x

    def mask_shapes(self, batch: int, members: int | None = None) -> list[tuple[int, int, int]]:
        """The shapes of the dropout masks of a forward pass on `batch` inputs (of every member, or `members`)."""
        return [(self.members if members is None else members, batch, self.hidden)] * self.layers

    def detached(self) -> list[torch.Tensor]:
        """Detached views of the weights then biases (for `params`: gradients reach the inputs, not the weights)."""
        return [p.detach() for p in itertools.chain(self.weights, self.biases)]


def dropout_masks(uniform: torch.Tensor, shapes: Sequence[tuple[int, ...]], rates: Sequence[float]) -> list[
        torch.Tensor | None]:
    """Multiplicative dropout masks from uniform noise in [0, 1): 0 where the noise falls under the rate, else
    `1 / (1 - rate)`, so the expected activation is unchanged. `uniform` holds at least the masks' total size, in
    order; a zero rate gives None (no mask)."""
    masks: list[torch.Tensor | None] = []
    offset = 0
    for shape, rate in zip(shapes, rates, strict=True):
        size = math.prod(shape)
        if rate > 0.0:
            keep = uniform[offset : offset + size].view(shape) >= rate
            masks.append(torch.where(keep, 1.0 / (1.0 - rate), 0.0))
        else:
            masks.append(None)
        offset += size
    return masks


def sampled_masks(shapes: Sequence[tuple[int, ...]], rates: Sequence[float], generator: torch.Generator,
                  device: torch.device) -> list[torch.Tensor | None]:
    """Multiplicative dropout masks as `dropout_masks` makes them, drawn from `generator`: the dropped units of each
    are the successes of i.i.d. Bernoulli(rate) trials over its elements, found through their geometric gaps
    (about `rate` times fewer draws than one per element)."""
    masks: list[torch.Tensor | None] = []
    for shape, rate in zip(shapes, rates, strict=True):
        if rate > 0.0:
            size = math.prod(shape)
            mask = torch.full((size,), 1.0 / (1.0 - rate), device=device)
            mask[bernoulli_successes(size, rate, generator, device)] = 0.0
            masks.append(mask.view(shape))
        else:
            masks.append(None)
    return masks


def bernoulli_successes(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The indices (int64, ascending) of the successes among `n` i.i.d. Bernoulli(p) trials, `0 < p < 1`.

    The failures before each success are Geometric(p): floor(log(1 - U) / log(1 - p)) for U uniform in [0, 1), so the
    successes' positions are the running sums of those gaps plus one; gaps are drawn in chunks until one passes `n`
    (a host synchronization per chunk, normally one).
    """
    log_q = math.log1p(-p)
    expected = n * p
    chunk = int(expected + 6.0 * math.sqrt(expected * (1.0 - p)) + 16)
    found, last = [], -1
    while True:
        u = torch.rand(chunk, generator=generator, device=device, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-u) / log_q).long() + 1
        positions = gaps.cumsum(dim=0) + last
        found.append(positions[positions < n])
        last = int(positions[-1])
        if last >= n:
            return torch.cat(found)


def mask_size(shapes: Sequence[tuple[int, ...]]) -> int:
    """How many uniform draws `dropout_masks` takes for masks of these shapes."""
    return sum(math.prod(shape) for shape in shapes)
