"""Packs of seeds: S runs of one config but their seeds, trained in lockstep in one process.

A pack is built from lone runs, each built (or restored from its checkpoint) exactly as it would be alone, whose
networks are then stacked along their seed axis (`mbpo_cli.nn.seeds`): a seed starts in a pack where it would
start alone. A pack of one is the lone run itself.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mbpo_cli.config.schema import Config
from mbpo_cli.engine.state import RunState, build_run


def seed_config(config: Config, seed: int) -> Config:
    """`config` with `seed` as its seed."""
    return config if seed == config.train.seed else replace(config, train=replace(config.train, seed=seed))


def build_pack(config: Config, seeds: list[int], device: torch.device | None = None) -> RunState:
    """A fresh pack of `config`'s runs for `seeds`, in that order (a pack of one is `build_run`)."""
    return pack_states([build_run(seed_config(config, seed), device) for seed in seeds])


def pack_states(lones: list[RunState]) -> RunState:
    """One pack of the lone runs `lones` (built or restored, at the same env step), in their order."""
    if len(lones) != 1:
        raise NotImplementedError("packs of several seeds come with the packed agent and model")
    return lones[0]
