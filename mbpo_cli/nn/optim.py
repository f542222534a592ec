"""Optimizer states loaded from a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
