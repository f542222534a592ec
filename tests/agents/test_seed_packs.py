"""The seed axis through the base agents: a pack of S seeds in one set of tensors (`mbpo_cli.nn.seeds`).

A seed packed with others starts as it was alone (`pack_agents`), acts and learns on its own minibatch and noise
(drawn from its own generator in a lone run's shape), and comes back out as a lone agent (`seed_agent`); the same
pack run twice gives the same numbers; checkpoints written before the seed axis still load.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mbpo_cli.agents.base import GraphedAgent, pack_agents, seed_agent
from mbpo_cli.agents.factory import make_agent
from mbpo_cli.agents.sac import SAC
from mbpo_cli.config.load import build_config
from mbpo_cli.config.schema import SACConfig
from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.seeds import SeedAxisError

OBS, ACT, B, SEEDS, PICK = 5, 2, 32, 4, 2
NAMES = ["sac", "td3", "ddpg", "dqn"]


def _lone(name: str, seed: int) -> GraphedAgent:
    """A lone agent built under `seed` (as a run with that seed builds it)."""
    torch.manual_seed(seed)
    # DQN's gradients clipped on every update (each seed's on its own: a shared norm would show)
    section = {"hidden": 32, **({"max_grad_norm": 0.05} if name == "dqn" else {})}
    agent = make_agent(build_config({"agent": {"name": name}, name: section}), OBS, ACT)
    assert isinstance(agent, GraphedAgent)
    return agent


def _batch(seed: int, step: int, discrete: bool) -> Batch:
    """Seed `seed`'s minibatch of update `step`, `B` transitions (no seed axis)."""
    g = torch.Generator().manual_seed(1000 * seed + step)
    act = torch.rand(B, ACT, generator=g) * 2 - 1
    if discrete:
        act = nn.functional.one_hot(act.argmax(dim=-1), ACT).float()
    return Batch(torch.randn(B, OBS, generator=g), act, torch.randn(B, generator=g), torch.randn(B, OBS, generator=g),
                 (torch.rand(B, generator=g) < 0.1).float())


def _stacked(batches: list[Batch]) -> Batch:
    return Batch(*(torch.stack(fields) for fields in zip(*batches, strict=True)))


def _generators(seeds: range | list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(7 + s) for s in seeds]


def _train(agent: GraphedAgent, seeds: list[int], steps: int, discrete: bool) -> list[dict[str, torch.Tensor]]:
    """`steps` updates of `agent` (a pack of `seeds`) on each seed's own minibatches and generators; the infos."""
    generators = _generators(seeds)
    infos = []
    for step in range(steps):
        agent.on_env_step(step)
        info = agent.update(_stacked([_batch(s, step, discrete) for s in seeds]), generators)
        infos.append({k: v.clone() for k, v in info.items()})
    return infos


def _tensors(agent: GraphedAgent) -> dict[str, torch.Tensor]:
    """Every tensor the agent holds: its state dict and its optimizers' states."""
    state = {k: v for k, v in agent.state_dict().items() if isinstance(v, torch.Tensor)}
    for name, opt in agent.optimizers().items():
        for index, slot in opt.state_dict()["state"].items():
            state.update({f"{name}.{index}.{k}": v for k, v in slot.items() if isinstance(v, torch.Tensor)})
    return state


def _equal(a: GraphedAgent, b: GraphedAgent) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(ta[k].shape == tb[k].shape and torch.equal(ta[k], tb[k]) for k in ta)


def _close(a: GraphedAgent, b: GraphedAgent) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.allclose(ta[k], tb[k], rtol=1e-4, atol=1e-6) for k in ta)


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_in_a_pack_of_four_learns_as_alone_to_rounding(name: str) -> None:
    """Seeds 0-3 packed from lone agents, each updated on its own minibatches and generator: seed 2 taken back
    out matches seed 2 trained alone on the same data (weights, targets, Adam moments, losses) to float32 rounding,
    not bit for bit: two CPU kernels round a seed's numbers differently in a pack (fused Adam's vectorized body and
    its scalar tail; a one-member or one-output batched matmul against a batch of S), see the issue's report."""
    discrete = name == "dqn"
    pack = pack_agents([_lone(name, s) for s in range(SEEDS)])
    assert pack.seeds == SEEDS
    pack_infos = _train(pack, list(range(SEEDS)), 6, discrete)
    alone = _lone(name, PICK)
    alone_infos = _train(alone, [PICK], 6, discrete)
    assert _close(seed_agent(pack, PICK), alone)
    for packed, lone in zip(pack_infos, alone_infos, strict=True):
        assert packed.keys() == lone.keys()
        assert all(packed[k].shape == (SEEDS,) for k in packed)
        assert all(torch.allclose(packed[k][PICK:PICK + 1], lone[k], rtol=1e-4, atol=1e-6) for k in packed)
    assert not _close(seed_agent(pack, 1), alone)  # the seeds differ


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_in_a_pack_acts_as_alone(name: str) -> None:
    """Exploring actions: seed s's noise from its own generator in a lone run's shape (DQN: its epsilon draws)."""
    pack = pack_agents([_lone(name, s) for s in range(SEEDS)])
    alone = _lone(name, PICK)
    pack.on_env_step(10)
    alone.on_env_step(10)
    obs = torch.randn(SEEDS, 64, OBS, generator=torch.Generator().manual_seed(3))
    for deterministic in (True, False):
        packed = pack.act(obs, deterministic, _generators(range(SEEDS)))
        lone = alone.act(obs[PICK:PICK + 1], deterministic, _generators([PICK]))
        assert packed.shape == (SEEDS, 64, ACT) and torch.equal(packed[PICK:PICK + 1], lone)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_pack_twice_gives_the_same_numbers(name: str) -> None:
    discrete = name == "dqn"
    one, two = (pack_agents([_lone(name, s) for s in range(SEEDS)]) for _ in range(2))
    first, second = _train(one, list(range(SEEDS)), 4, discrete), _train(two, list(range(SEEDS)), 4, discrete)
    assert _equal(one, two)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, second, strict=True) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_come_out_of_a_pack_as_they_went_in(name: str) -> None:
    """pack then seed_agent returns each lone agent's networks, counters and optimizer states (after updates, so
    that Adam's moments and TD3's counter are there to check)."""
    discrete = name == "dqn"
    agents = [_lone(name, s) for s in range(3)]
    for s, agent in enumerate(agents):
        _train(agent, [s], 3, discrete)
    pack = pack_agents(agents)
    for s, agent in enumerate(agents):
        assert _equal(seed_agent(pack, s), agent)
    assert pack.epoch_metrics() == [agent.epoch_metrics()[0] for agent in agents]


def test_seeds_share_what_the_pack_steps_in_lockstep() -> None:
    """TD3's delayed-actor phase and DQN's epsilon follow the pack, shared by its seeds; a pack of agents whose
    counters differ is refused."""
    td3 = pack_agents([_lone("td3", s) for s in range(3)])
    _train(td3, [0, 1, 2], 2, False)
    assert td3.updates == 2 and seed_agent(td3, 1).updates == 2
    behind = _lone("td3", 3)
    with pytest.raises(SeedAxisError, match="counters"):
        pack_agents([seed_agent(td3, 0), behind])
    dqn = pack_agents([_lone("dqn", s) for s in range(3)])
    dqn.on_env_step(10_000)
    assert [m["epsilon"] for m in dqn.epoch_metrics()] == [pytest.approx(dqn.config.epsilon_end)] * 3
    with pytest.raises(SeedAxisError, match="schedules"):
        pack_agents([seed_agent(dqn, 0), _lone("dqn", 5)])


def test_sac_reports_each_seeds_temperature_and_shares_its_target_entropy() -> None:
    pack = pack_agents([_lone("sac", s) for s in range(3)])
    assert isinstance(pack, SAC) and pack.log_alpha.shape == (3,) and pack.target_entropy.shape == ()
    with torch.no_grad():
        pack.log_alpha.copy_(torch.tensor([0.0, 1.0, -1.0]))
    alphas = [m["alpha"] for m in pack.epoch_metrics()]
    assert alphas == pytest.approx([1.0, 2.718281828, 0.367879441])
    assert SAC.shared_state == {"target_entropy"}


@pytest.mark.parametrize("name", NAMES)
def test_a_pack_of_several_has_no_single_policy(name: str) -> None:
    pack = pack_agents([_lone(name, s) for s in range(2)])
    with pytest.raises(SeedAxisError, match="packs 2 seeds"):
        _ = pack.policy
    with pytest.raises(SeedAxisError, match="packs 2 seeds"):
        pack.deterministic_policy()
    assert seed_agent(pack, 1).policy is not None


def test_dhmbpos_agent_is_not_packed() -> None:
    config = build_config({"algo": "dhmbpo"})
    assert make_agent(config, OBS, ACT).seeds == 1
    with pytest.raises(SeedAxisError, match="one seed at a time"):
        make_agent(config, OBS, ACT, seeds=2)


def test_the_update_wants_one_generator_per_seed() -> None:
    pack = pack_agents([_lone("sac", s) for s in range(2)])
    with pytest.raises(SeedAxisError, match="1 generators for a pack of 2"):
        pack.update(_stacked([_batch(0, 0, False), _batch(1, 0, False)]), _generators([0]))


def test_a_checkpoint_from_before_the_seed_axis_loads() -> None:
    """SAC's temperature was a scalar (and so were its Adam moments): a state dict and optimizer states in that
    format load into today's `(1,)` and the agent goes on learning exactly as the one that wrote them."""
    writer = _lone("sac", 0)
    _train(writer, [0], 2, False)
    old = {k: (v.reshape(()) if k == "log_alpha" else v).clone() for k, v in writer.state_dict().items()}
    optimizers = copy.deepcopy({name: opt.state_dict() for name, opt in writer.optimizers().items()})  # as saved
    alpha_state = optimizers["alpha"]["state"][0]
    optimizers["alpha"]["state"][0] = {k: (v if k == "step" else v.reshape(())) for k, v in alpha_state.items()}
    assert old["log_alpha"].shape == () and optimizers["alpha"]["state"][0]["exp_avg"].shape == ()
    reader = SAC(OBS, ACT, SACConfig(hidden=32))
    reader.load_state_dict(old)
    reader.load_optimizer_states(optimizers)
    assert reader.log_alpha.shape == (1,) and reader.alpha_optimizer.state[reader.log_alpha]["exp_avg"].shape == (1,)
    assert _equal(reader, writer)
    _train_from(reader, 2, 4)
    _train_from(writer, 2, 4)
    assert _equal(reader, writer)


def _train_from(agent: GraphedAgent, start: int, stop: int) -> None:
    generators = _generators([0])
    for step in range(start, stop):
        agent.update(_stacked([_batch(0, step, False)]), generators)
