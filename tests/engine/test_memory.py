"""The pack memory estimate: its parts against what a built run allocates, and the refusal of a pack too large."""

from __future__ import annotations

import pytest
import torch

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.memory import (
    PackTooLarge,
    SeedMemory,
    check_pack_fits,
    largest_pack,
    model_buffer_rows,
    seed_memory,
)
from mbpo_cli.engine.state import build_run


def test_the_estimate_counts_what_a_built_run_holds() -> None:
    config = resolve_config(preset="inverted_pendulum", steps=3000, seed=0,
                            overrides=["train.device=cpu", "rollout.batch_size=400", "rollout.schedule=[1,5,1,3]",
                                       "train.epoch_length=1000", "rollout.retain_epochs=2"])
    state = build_run(config)
    memory = seed_memory(config, state.spec.obs_dim, state.spec.act_dim)
    real = sum(t.numel() * t.element_size() for t in state.lone.real_buffer.data)
    assert memory.real_buffer == real == 3000 * (2 * 4 + 1 + 2) * 4  # InvertedPendulum: obs 4, act 1
    # the longest branch (3) x rollouts per epoch (1000 / 250 = 4) x retained epochs x rollout batch
    assert model_buffer_rows(config) == 3 * 4 * 2 * 400
    assert state.model is not None
    states = sum(t.numel() for m in (state.agent, state.model) for t in m.state_dict().values())  # type: ignore[attr-defined]
    trainable = sum(p.numel() for m in (state.agent, state.model) for p in m.parameters() if p.requires_grad)  # type: ignore[attr-defined]
    assert memory.networks == (states + 3 * trainable) * 4


def test_building_the_estimate_draws_no_random_numbers() -> None:
    config = resolve_config(preset="humanoid")
    before = torch.get_rng_state()
    seed_memory(config, 348, 17)
    assert torch.equal(before, torch.get_rng_state())


def test_a_pack_too_large_is_refused_with_the_estimate_and_the_largest_that_fits() -> None:
    memory = SeedMemory(real_buffer=2**30, model_buffer=2**30, networks=0, working=2**30)
    assert memory.pack(3) == 7 * 2**30
    assert largest_pack(memory, 6 * 2**30) == 2
    assert largest_pack(memory, 2 * 2**30) == 0
    check_pack_fits(memory, 2, torch.device("cpu"), available=5 * 2**30)
    with pytest.raises(PackTooLarge, match=r"^4 seeds need about 9\.00 GiB on cpu \(2\.00 GiB per seed\), 6\.00 GiB "
                                           r"is free: at most 2 seeds fit$"):
        check_pack_fits(memory, 4, torch.device("cpu"), available=6 * 2**30)
    with pytest.raises(PackTooLarge, match="not even one seed fits"):
        check_pack_fits(memory, 1, torch.device("cpu"), available=2**30)
