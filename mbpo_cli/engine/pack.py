"""Packs of seeds: S runs of one config but their seeds, trained in lockstep in one process.

A pack is built from lone runs, each built (or restored from its checkpoint) exactly as it would be alone, whose
networks are then stacked along their seed axis (`mbpo_cli.nn.seeds`): a seed starts in a pack where it would
start alone. The other way, `lone_view` is one seed of a pack as a lone run (what its checkpoint holds, what its
policy file holds). A pack of one is the lone run itself.

Every agent (SAC, TD3, DDPG, DQN) and the learned termination pack; DHMBPO and the background retrain
(`train.pipeline`) run one seed per process.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mbpo_cli.agents.base import GraphedAgent, pack_agents, seed_agent
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.state import EpochAccumulator, RunState, build_run
from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer
from mbpo_cli.models.termination.learned import DoneClassifier, make_done_optimizer, per_seed_steps
from mbpo_cli.nn.seeds import seed_optimizer_state, stack_optimizer_states


def seed_config(config: Config, seed: int) -> Config:
    """`config` with `seed` as its seed."""
    return config if seed == config.train.seed else replace(config, train=replace(config.train, seed=seed))


def check_packable(config: Config, seeds: int) -> None:
    """ConfigError when `config` cannot train `seeds` seeds in one process."""
    if seeds <= 1:
        return
    if config.algo == "dhmbpo":
        raise ConfigError("--seeds: DHMBPO trains one seed per process (run the seeds as separate runs, e.g. with "
                          "mbpo ablate --pack 1)")
    if config.train.pipeline:
        raise ConfigError("--seeds: train.pipeline (the background retrain) trains one seed per process")
    if config.algo == "mbpo" and config.rollout.when == "episode":
        raise ConfigError("--seeds: rollout.when: episode retrains at each seed's own episode starts; a pack steps "
                          "its seeds in lockstep (rollout.when: step)")


def build_pack(config: Config, seeds: list[int], device: torch.device | None = None) -> RunState:
    """A fresh pack of `config`'s runs for `seeds`, in that order (a pack of one is `build_run`)."""
    check_packable(config, len(seeds))
    lones = [build_run(seed_config(config, seed), device) for seed in seeds]
    for index, lone in enumerate(lones):
        lone.lone.index = index
    return pack_states(lones)


def pack_states(lones: list[RunState]) -> RunState:
    """One pack of the lone runs `lones` (built or restored, at the same env step), in their order; a pack of one is
    that run."""
    first = lones[0]
    if len(lones) == 1:
        return first
    check_packable(first.config, len(lones))
    counters = {(s.env_step, s.agent_updates, s.k, s.model_trained_at, s.updates_prepared) for s in lones}
    if len(counters) != 1:
        raise ValueError("the runs of a pack must stand at the same step (env step, updates, retrain, rollout length)")
    agents = [s.agent for s in lones]
    assert all(isinstance(a, GraphedAgent) for a in agents)
    packed = replace(first, members=[s.lone for s in lones], agent=pack_agents(agents),  # type: ignore[type-var]
                     epoch_acc=pack_accumulators([s.epoch_acc for s in lones]))
    if first.model is not None:
        models = [s.model for s in lones if s.model is not None]
        packed.model = GaussianEnsemble.pack(models)
        packed.model_optimizer = make_model_optimizer(packed.model)
        packed.model_optimizer.load_state_dict(
            stack_optimizer_states([s.model_optimizer.state_dict() for s in lones if s.model_optimizer is not None]))
    if first.done_model is not None:
        classifiers = [s.done_model for s in lones if s.done_model is not None]
        packed.done_model = DoneClassifier.pack(classifiers)
        packed.done_optimizer = make_done_optimizer(packed.done_model)
        params = list(classifiers[0].net.parameters())
        states = [s.done_optimizer.state_dict() for s in lones if s.done_optimizer is not None]
        if any(state["state"] for state in states):
            packed.done_optimizer.load_state_dict(stack_optimizer_states([per_seed_steps(st, params) for st in states]))
    return packed


def pack_accumulators(accumulators: list[EpochAccumulator]) -> EpochAccumulator:
    """The pack's epoch sums from its seeds' (each update's values one per seed, stacked); the seeds' counts and
    seconds agree (the first's are kept)."""
    first = accumulators[0]
    sums = {key: torch.cat([acc.sums[key].reshape(-1) for acc in accumulators]) for key in first.sums}
    return EpochAccumulator(sums=sums, counts=dict(first.counts), updates=first.updates, seconds=dict(first.seconds))


def seed_accumulator(acc: EpochAccumulator, member: int) -> EpochAccumulator:
    """Seed `member`'s part of the pack's epoch sums, as its lone run holds them."""
    sums = {key: value.reshape(-1)[member:member + 1].clone() for key, value in acc.sums.items()}
    return EpochAccumulator(sums=sums, counts=dict(acc.counts), updates=acc.updates, seconds=dict(acc.seconds))


def lone_view(state: RunState, member: int) -> RunState:
    """Seed `member` of the pack `state` as a lone run: its own `SeedRun` (the same object), copies of its networks and
    optimizer states, its part of the epoch's sums, the pack's counters. A lone run is its own view."""
    if len(state.members) == 1:
        return state
    seeds = len(state.members)
    assert isinstance(state.agent, GraphedAgent)
    view = replace(state, config=state.member_config(member), members=[state.members[member]],
                   agent=seed_agent(state.agent, member), epoch_acc=seed_accumulator(state.epoch_acc, member))
    if state.model is not None and state.model_optimizer is not None:
        view.model = state.model.seed(member)
        view.model_optimizer = make_model_optimizer(view.model)
        view.model_optimizer.load_state_dict(seed_optimizer_state(state.model_optimizer.state_dict(), member, seeds))
    if state.done_model is not None and state.done_optimizer is not None:
        view.done_model = state.done_model.seed(member)
        view.done_optimizer = make_done_optimizer(view.done_model)
        saved = state.done_optimizer.state_dict()
        if saved["state"]:
            view.done_optimizer.load_state_dict(seed_optimizer_state(saved, member, seeds))
    return view


def drop_failed(state: RunState) -> list[tuple[int, str]]:
    """Take the seeds of `state.failed` out of the pack; each one's (index in the pack as built, message). When every
    seed failed (a lone run's only one, say), NumericalError with the first one's message instead."""
    failed, state.failed = state.failed, {}
    if not failed:
        return []
    if len(failed) == len(state.members):
        raise NumericalError(next(iter(failed.values())))
    gone = [(state.members[place].index, message) for place, message in sorted(failed.items())]
    packed = pack_states([lone_view(state, place) for place in range(len(state.members)) if place not in failed])
    state.config, state.members, state.agent, state.epoch_acc = (packed.config, packed.members, packed.agent,
                                                                 packed.epoch_acc)
    state.model, state.model_optimizer = packed.model, packed.model_optimizer
    state.done_model, state.done_optimizer = packed.done_model, packed.done_optimizer
    state.updates_prepared = False  # captured updates had the old pack's shapes
    return gone
