"""The seed axis's state stacking: a pack built from lone states, trained one step, splits back into what each lone
run has after the same step, bit for bit (one batched matrix product per layer computes each member as alone)."""

from __future__ import annotations

import pytest
import torch

from mbpo_cli.nn.mlp import BatchedMLP
from mbpo_cli.nn.seeds import (
    SeedAxisError,
    seed_optimizer_state,
    seed_state,
    stack_optimizer_states,
    stack_states,
)


def _lone(seed: int) -> tuple[BatchedMLP, torch.optim.Adam]:
    torch.manual_seed(seed)
    net = BatchedMLP(2, 3, 1, 8, 2)
    return net, torch.optim.Adam(net.parameters(), lr=1e-2)


def _step(net: BatchedMLP, opt: torch.optim.Adam, x: torch.Tensor) -> None:
    opt.zero_grad()
    net(x).pow(2).mean(dim=(1, 2)).sum().backward()
    opt.step()


def test_a_pack_steps_as_its_lone_runs_and_splits_back_into_them() -> None:
    lones = [_lone(seed) for seed in (0, 1, 2)]
    inputs = [torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(10 + s)) for s in range(3)]
    for (net, opt), x in zip(lones, inputs, strict=True):
        _step(net, opt, x)  # an optimizer state to stack
    pack = BatchedMLP(6, 3, 1, 8, 2)
    pack_opt = torch.optim.Adam(pack.parameters(), lr=1e-2)
    pack.load_state_dict(stack_states([net.state_dict() for net, _ in lones]))
    pack_opt.load_state_dict(stack_optimizer_states([opt.state_dict() for _, opt in lones]))
    for (net, opt), x in zip(lones, inputs, strict=True):
        _step(net, opt, x)
    _step(pack, pack_opt, torch.cat(inputs))
    for s, (net, opt) in enumerate(lones):
        for key, value in seed_state(pack.state_dict(), s, 3).items():
            assert torch.equal(value, net.state_dict()[key]), key
        split = seed_optimizer_state(pack_opt.state_dict(), s, 3)
        lone = opt.state_dict()
        for index, entry in lone["state"].items():
            assert torch.equal(split["state"][index]["exp_avg"], entry["exp_avg"])
            assert float(split["state"][index]["step"]) == float(entry["step"]) == 2.0


def test_a_shared_tensor_must_agree_and_a_scalar_cannot_be_per_seed() -> None:
    a = {"w": torch.ones(1, 2), "target": torch.tensor(1.0)}
    b = {"w": torch.zeros(1, 2), "target": torch.tensor(2.0)}
    with pytest.raises(SeedAxisError, match="'target' is shared"):
        stack_states([a, b], shared={"target"})
    with pytest.raises(SeedAxisError, match="'target' is a scalar"):
        stack_states([a, b])
    packed = stack_states([a, {**b, "target": torch.tensor(1.0)}], shared={"target"})
    assert packed["w"].tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert seed_state(packed, 1, 2, shared={"target"})["target"].item() == 1.0
    with pytest.raises(SeedAxisError, match="no multiple of 3"):
        seed_state(packed, 0, 3, shared={"target"})
