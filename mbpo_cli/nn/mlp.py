"""Batched multilayer perceptrons: E independent networks held as `E x in x out` weights.

One `torch.baddbmm` per layer evaluates every member at once; the ensemble dynamics model (E = 7)
and SAC's twin critics (E = 2) are both this module.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn


class BatchedMLP(nn.Module):
    """E parallel MLPs `in -> hidden x layers -> out` with a shared activation.

    Weights are `E x in x out`, biases `E x 1 x out`. `forward` takes `E x B x in` and returns
    `E x B x out`; `forward_members` evaluates a chosen subset of members.
    """

    def __init__(
        self,
        members: int,
        in_dim: int,
        out_dim: int,
        hidden: int,
        layers: int,
        activation: type[nn.Module] = nn.ReLU,
        init: str = "uniform",
    ) -> None:
        super().__init__()
        dims = [in_dim, *([hidden] * layers), out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(dims):
            weight = torch.empty(members, fan_in, fan_out)
            bias = torch.empty(members, 1, fan_out)
            if init == "truncated_normal":
                nn.init.trunc_normal_(weight, std=1.0 / (2.0 * math.sqrt(fan_in)), a=-1.0 / math.sqrt(fan_in),
                                      b=1.0 / math.sqrt(fan_in))
                nn.init.zeros_(bias)
            else:
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(weight, -bound, bound)
                nn.init.uniform_(bias, -bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        self.activation = activation(inplace=True) if activation is nn.ReLU else activation()
        self.members = members

    def forward(self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """`E x B x in` -> `E x B x out`; `params` (weights then biases) overrides the module's own."""
        n = len(self.weights)
        weights = list(self.weights) if params is None else list(params[:n])
        biases = list(self.biases) if params is None else list(params[n:])
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = self.activation(x)
        return x

    def forward_members(self, x: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """`M x B x in` through members `members` (M indices) -> `M x B x out`."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b[members], x, w[members])
            if i < last:
                x = self.activation(x)
        return x


def linear_layers(mlp: BatchedMLP, outputs: int | None = None) -> nn.Sequential:
    """The one-member ``mlp`` as a copy in ``nn.Linear`` layers with its activation between them (same weights): what
    export formats map (ONNX's Gemm) and dynamic INT8 quantization acts on. ``outputs`` keeps only the last layer's
    first outputs (SAC's mean, without its log-std)."""
    assert mlp.members == 1, "a policy network has one member"
    layers: list[nn.Module] = []
    last = len(mlp.weights) - 1
    for i, (weight, bias) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        w, b = weight[0].T, bias[0, 0]  # out x in, out
        if i == last and outputs is not None:
            w, b = w[:outputs], b[:outputs]
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        layers.append(linear)
        if i < last:
            layers.append(copy.deepcopy(mlp.activation))
    return nn.Sequential(*layers)
