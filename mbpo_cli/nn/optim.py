"""Optimizer states loaded from a checkpoint, and the seed axis's Adam (`SeedAdam`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def learning_rates_kept(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Around loading a saved state into `optimizer`: each parameter group keeps the learning rate it had before
    (`load_state_dict` restores the saved ones, while an optimizer is built with its config's, which a resumed run
    may have changed)."""
    rates = [group["lr"] for group in optimizer.param_groups]
    yield
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate


class SeedAdam(torch.optim.Adam):
    """Fused Adam over a pack's parameters (each per-seed, seed-major along dim 0: `mbpo_cli.nn.seeds`) that steps
    every seed as its lone run's `Adam(fused=True)` steps it, and only the seeds in `active`.

    The fused kernel runs on each seed's rows (views), so that a seed's tensors are cut into the same vector blocks
    and scalar tail as alone: on the whole packed tensor a lone tensor's tail (e.g. the `obs + 1` log-variance
    bounds) falls inside vector blocks, whose rounding differs. Each parameter's `step` holds one count per seed
    (`S`), and a seed outside `active` (one that has stopped training) is not stepped at all: its rows, moments and
    count stay as they are, whatever gradient the pack computed for it. A pack of one is exactly `Adam(fused=True)`
    (its `step` a 1-element tensor rather than a scalar: a saved scalar loads as one).
    """

    def __init__(self, params: Any, seeds: int, lr: float) -> None:
        super().__init__(params, lr=lr, fused=True)
        self.seeds = seeds
        self.active: set[int] = set(range(seeds))
        """The seeds that `step` updates (all of them unless a caller masks some out)."""

    def __getstate__(self) -> dict[str, Any]:
        """Adam's, with the pack's size and active seeds (a copy or a pickle keeps them)."""
        return {**super().__getstate__(), "seeds": self.seeds, "active": set(self.active)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As Adam's, but a step count saved as a scalar (by `Adam`, or before the seed axis) counts for every seed."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.dim() == 0:
                state["step"] = step.reshape(1).repeat(self.seeds)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]  # no closure form: the loss is not needed
        """One Adam step of each active seed's rows of every parameter with a gradient."""
        assert closure is None, "SeedAdam takes no closure"
        seeds = sorted(self.active)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros(self.seeds, dtype=torch.float32, device=param.device)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                rows = param.shape[0] // self.seeds
                for s in seeds:
                    part = slice(s * rows, (s + 1) * rows)
                    params.append(param[part])
                    grads.append(param.grad[part])
                    exp_avgs.append(state["exp_avg"][part])
                    exp_avg_sqs.append(state["exp_avg_sq"][part])
                    steps.append(state["step"][s])
            if not params:
                continue
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=group["amsgrad"],
                               lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                               eps=group["eps"], maximize=group["maximize"], grad_scale=None, found_inf=None)
