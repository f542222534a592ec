"""The seed axis: S runs that share a config except their seed, held as one set of tensors.

Every per-seed tensor of a packed module is *seed-major along dim 0*: where a lone run's tensor has `m` rows, the
pack's has `S x m`, and seed `s` owns rows `[s m, (s + 1) m)` (the actor `S x in x out`, twin critics
`2S x in x out`, the ensemble `S E x in x out`, the temperature `S`, the input normalizer `S x in`). A lone run
is a pack of one, in the same format. Tensors every seed shares (a config constant such as the target entropy)
are named by the module and copied, not stacked.

`stack_states` builds a pack's state from lone ones (each built under its own seed, so that a seed starts in a
pack exactly as alone); `seed_state` takes one seed's back out (its checkpoint, its policy). The same for
optimizer states, whose per-parameter tensors follow their parameter: a step count kept per seed (`SeedAdam`'s, `S`)
stacks like them, a scalar one (plain Adam's) must agree between the seeds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch


class SeedAxisError(ValueError):
    """Tensors that cannot be stacked into a pack or split out of one (mismatched shapes, a shared value that
    differs between seeds, rows not divisible by the pack's size)."""


def stack_states(states: Sequence[Mapping[str, torch.Tensor]], shared: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """The pack's state from S lone states (same keys): per-seed tensors concatenated along dim 0 in seed order,
    `shared` ones taken from the first (they must be equal in every seed)."""
    if not states:
        raise SeedAxisError("a pack needs at least one seed")
    keys = list(states[0])
    packed: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [state[key] for state in states]
        if key in shared:
            if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
                raise SeedAxisError(f"'{key}' is shared by every seed of a pack but differs between them")
            packed[key] = tensors[0]
        else:
            if tensors[0].dim() == 0:
                raise SeedAxisError(f"'{key}' is a scalar: a per-seed tensor needs a leading seed axis")
            packed[key] = torch.cat(tensors, dim=0)
    return packed


def seed_rows(tensor: torch.Tensor, seed: int, seeds: int, key: str = "tensor") -> torch.Tensor:
    """Seed `seed`'s rows of a per-seed tensor of a pack of `seeds` (a view)."""
    if not 0 <= seed < seeds:
        raise SeedAxisError(f"seed index {seed} is outside a pack of {seeds}")
    if tensor.dim() == 0 or tensor.shape[0] % seeds:
        raise SeedAxisError(f"'{key}' has {tuple(tensor.shape)}: its first dimension is no multiple of {seeds}")
    rows = tensor.shape[0] // seeds
    return tensor[seed * rows:(seed + 1) * rows]


def seed_state(state: Mapping[str, torch.Tensor], seed: int, seeds: int,
               shared: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """Seed `seed`'s lone state out of a pack of `seeds` (copies, so that it outlives the pack's tensors)."""
    return {key: (value.clone() if key in shared else seed_rows(value, seed, seeds, key).clone())
            for key, value in state.items()}


def stack_optimizer_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The pack's optimizer state from S lone ones of the same optimizer over the same parameters: per-parameter
    tensors with the parameter's rows are concatenated, the rest (step counts, scalars) must agree and are kept."""
    if not states:
        raise SeedAxisError("a pack needs at least one seed")
    first = states[0]
    packed: dict[int, dict[str, Any]] = {}
    for index, entry in first["state"].items():
        packed[index] = {}
        for name, value in entry.items():
            values = [state["state"][index][name] for state in states]
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                packed[index][name] = torch.cat(values, dim=0)
            else:
                if any(not _equal(v, value) for v in values[1:]):
                    raise SeedAxisError(f"optimizer state '{name}' of parameter {index} differs between seeds")
                packed[index][name] = _copy(value)  # a copy: a loaded optimizer keeps a step tensor it is given
    return {"state": packed, "param_groups": first["param_groups"]}


def seed_optimizer_state(state: Mapping[str, Any], seed: int, seeds: int) -> dict[str, Any]:
    """Seed `seed`'s lone optimizer state out of a pack of `seeds`."""
    lone: dict[int, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        lone[index] = {name: (seed_rows(value, seed, seeds, name).clone()
                              if isinstance(value, torch.Tensor) and value.dim() > 0 else _copy(value))
                       for name, value in entry.items()}
    return {"state": lone, "param_groups": state["param_groups"]}


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def _copy(value: object) -> object:
    return value.clone() if isinstance(value, torch.Tensor) else value
