"""SeedAdam: a pack of one is torch's fused Adam, a seed in a pack is stepped as alone, a masked seed stays put, and
a scalar step count saved before the seed axis loads."""

import torch

from mbpo_cli.nn.optim import SeedAdam
from mbpo_cli.nn.seeds import seed_optimizer_state, stack_optimizer_states

SHAPES = [(3, 1, 5), (3, 7, 5), (3, 2, 33)]
"""Per-seed parameters whose sizes (5, 35, 66 floats) are no whole number of vector blocks: a lone tensor's tail."""


def _params(seed: int, seeds: int = 1) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn((seeds * shape[0], *shape[1:]), generator=g)) for shape in SHAPES]


def _grads(params: list[torch.nn.Parameter], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def _groups(params: list[torch.nn.Parameter]) -> list[dict]:
    return [{"params": params[:1], "weight_decay": 1e-4}, {"params": params[1:], "weight_decay": 0.0}]


def test_a_pack_of_one_steps_as_fused_adam() -> None:
    ours, theirs = _params(0), _params(0)
    seed_adam = SeedAdam(_groups(ours), seeds=1, lr=1e-3)
    adam = torch.optim.Adam(_groups(theirs), lr=1e-3, fused=True)
    for step in range(30):
        _grads(ours, step)
        _grads(theirs, step)
        seed_adam.step()
        adam.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    for a, b in zip(seed_adam.state_dict()["state"].values(), adam.state_dict()["state"].values(), strict=True):
        assert all(torch.equal(a[k].reshape(-1), b[k].reshape(-1)) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_a_seed_in_a_pack_steps_as_alone_and_a_masked_one_stays() -> None:
    """Seed 1 of 3 against the same seed alone, through sizes with a scalar tail (on the packed tensor its elements
    fall in vector blocks, which torch's fused Adam rounds differently); seed 2 masked out for the last steps keeps
    its rows, moments and step count."""
    lone = [_params(10 + s) for s in range(3)]
    pack = [torch.nn.Parameter(torch.cat([p[i].detach() for p in lone])) for i in range(len(SHAPES))]
    optimizer = SeedAdam(_groups(pack), seeds=3, lr=1e-3)
    alone = SeedAdam(_groups(lone[1]), seeds=1, lr=1e-3)
    for step in range(40):
        if step == 30:
            optimizer.active = {0, 1}
            frozen = [p.detach()[6:].clone() for p in pack]
            frozen_state = seed_optimizer_state(optimizer.state_dict(), 2, 3)
        _grads(pack, step)
        g = torch.Generator().manual_seed(step)
        for i, p in enumerate(lone[1]):
            p.grad = torch.randn(pack[i].shape, generator=g)[p.shape[0]:2 * p.shape[0]]
        optimizer.step()
        alone.step()
    assert all(torch.equal(p.detach()[3:6], q.detach()) for p, q in zip(pack, lone[1], strict=True))
    assert seed_optimizer_state(optimizer.state_dict(), 1, 3)["state"].keys() == alone.state_dict()["state"].keys()
    for index, entry in alone.state_dict()["state"].items():
        packed = seed_optimizer_state(optimizer.state_dict(), 1, 3)["state"][index]
        assert all(torch.equal(packed[k], v) for k, v in entry.items())
    assert all(torch.equal(p.detach()[6:], f) for p, f in zip(pack, frozen, strict=True))
    later = seed_optimizer_state(optimizer.state_dict(), 2, 3)["state"]
    assert all(torch.equal(later[i][k], v) for i, entry in frozen_state["state"].items() for k, v in entry.items())
    assert float(later[0]["step"]) == 30.0 and float(seed_optimizer_state(optimizer.state_dict(), 1, 3)["state"][0]
                                                     ["step"]) == 40.0


def test_a_scalar_step_count_saved_before_the_seed_axis_loads_and_stacks() -> None:
    params = _params(1)
    adam = torch.optim.Adam(_groups(params), lr=1e-3, fused=True)
    _grads(params, 0)
    adam.step()
    old = adam.state_dict()
    assert old["state"][0]["step"].dim() == 0
    loaded = SeedAdam(_groups(_params(1)), seeds=1, lr=1e-3)
    loaded.load_state_dict(old)
    state = loaded.state_dict()["state"]
    assert all(entry["step"].shape == (1,) and float(entry["step"]) == 1.0 for entry in state.values())
    packed = stack_optimizer_states([loaded.state_dict(), loaded.state_dict()])
    assert packed["state"][0]["step"].tolist() == [1.0, 1.0]
