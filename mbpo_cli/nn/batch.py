"""The transition minibatch shared by buffers, models and agents."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """A minibatch of `B` transitions. `done` is termination only (1.0), never time-limit truncation."""

    obs: torch.Tensor
    act: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor


FIELDS = Batch._fields
