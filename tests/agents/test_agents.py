"""The base agents behind one protocol: updates as pure functions of batch, noise and phase (what a CUDA graph
replays), TD3's delayed actor, DQN's one-hot epsilon-greedy policy, counters that survive a state_dict."""

import pytest
import torch
from torch import nn

from mbpo_cli.agents.base import GraphedAgent, lone_act
from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.agents.dqn import DQN
from mbpo_cli.agents.factory import action_space_of, agents_for, make_agent
from mbpo_cli.agents.td3 import TD3
from mbpo_cli.config.load import build_config
from mbpo_cli.config.schema import DQNConfig, TD3Config
from mbpo_cli.nn.batch import Batch

OBS, ACT, B = 5, 2, 32


def _agent(name: str) -> GraphedAgent:
    torch.manual_seed(0)
    config = build_config({"agent": {"name": name}, name: {"hidden": 32}})
    return make_agent(config, OBS, ACT)


def _batch(seed: int, discrete: bool = False) -> Batch:
    g = torch.Generator().manual_seed(seed)
    act = torch.rand(B, ACT, generator=g) * 2 - 1
    if discrete:
        act = nn.functional.one_hot(act.argmax(dim=-1), ACT).float()
    lone = Batch(torch.randn(B, OBS, generator=g), act, torch.randn(B, generator=g), torch.randn(B, OBS, generator=g),
                 (torch.rand(B, generator=g) < 0.1).float())
    return Batch(*(t.unsqueeze(0) for t in lone))  # a pack of one seed


def _params(agent: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["sac", "td3", "ddpg", "dqn"])
def test_update_is_a_function_of_batch_noise_and_phase(name: str) -> None:
    """`update` draws its noise and picks its phase, then is exactly `update_with_noise` (what a graph replays)."""
    one, two = _agent(name), _agent(name)
    discrete = name == "dqn"
    for step in range(4):
        batch = _batch(step, discrete)
        g1, g2 = torch.Generator().manual_seed(step), torch.Generator().manual_seed(step)
        info = one.update(batch, [g1])
        shape = two.noise_shape(batch)
        noise = None if shape is None else torch.randn(shape, generator=g2).unsqueeze(0)
        two.update_with_noise(batch, noise, two.next_phase())
        assert all(v.shape == (1,) and bool(torch.isfinite(v).all()) for v in info.values())
    assert _same(_params(one), _params(two))
    assert not _same(_params(one), _params(_agent(name)))


@pytest.mark.parametrize("name", ["sac", "td3", "ddpg", "dqn"])
def test_cpu_stays_eager_and_unchanged(name: str) -> None:
    agent, fresh = _agent(name), _agent(name)
    mode = agent.use_cuda_graph(_batch(0, name == "dqn"), [torch.Generator().manual_seed(0)])
    assert agent.graph is None and mode.startswith("eager")
    assert _same(_params(agent), _params(fresh))


def test_td3_steps_the_actor_and_targets_every_policy_delay_updates() -> None:
    agent = TD3(OBS, ACT, TD3Config(hidden=32, policy_delay=3))
    gen = torch.Generator().manual_seed(0)
    actor_moved, target_moved = [], []
    for step in range(6):
        actor, target = _params(agent.actor), _params(agent.critic_target)
        info = agent.update(_batch(step), [gen])
        actor_moved.append(not _same(actor, _params(agent.actor)))
        target_moved.append(not _same(target, _params(agent.critic_target)))
        assert ("actor_loss" in info) == actor_moved[-1]
    assert actor_moved == [False, False, True, False, False, True]
    assert target_moved == actor_moved
    # the counter that decides the phase travels with the weights (a resumed run keeps the rhythm)
    twin = TD3(OBS, ACT, TD3Config(hidden=32, policy_delay=3))
    twin.load_state_dict(agent.state_dict())
    assert twin.updates == 6


def test_dqn_acts_with_one_hot_greedy_or_epsilon_greedy_actions() -> None:
    agent = DQN(OBS, 3, DQNConfig(hidden=32, epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=100))
    obs = torch.randn(1, 400, OBS, generator=torch.Generator().manual_seed(0))
    greedy = agent.act(obs, deterministic=True)
    assert greedy.shape == (1, 400, 3) and bool((greedy.sum(dim=-1) == 1).all())
    assert torch.equal(greedy.argmax(dim=-1), agent.q(obs).argmax(dim=-1))
    agent.on_env_step(0)
    assert agent.epsilon == 1.0
    explored = agent.act(obs, deterministic=False, generators=[torch.Generator().manual_seed(1)])
    assert (explored.argmax(-1) != greedy.argmax(-1)).float().mean() > 0.5  # uniform: 2/3 differ on average
    agent.on_env_step(50)
    assert agent.epsilon == pytest.approx(0.55)
    agent.on_env_step(10_000)
    assert agent.epsilon == pytest.approx(0.1) and agent.epoch_metrics() == [{"epsilon": pytest.approx(0.1)}]
    mostly = agent.act(obs, deterministic=False, generators=[torch.Generator().manual_seed(2)])
    assert 0.0 < (mostly.argmax(-1) != greedy.argmax(-1)).float().mean() < 0.15


def test_action_spaces() -> None:
    assert [action_space_of(n) for n in ("sac", "td3", "ddpg", "dqn")] == ["continuous"] * 3 + ["discrete"]
    assert agents_for("continuous") == ["sac", "td3", "ddpg"] and agents_for("discrete") == ["dqn"]


@pytest.mark.parametrize("name", ["td3", "ddpg"])
def test_deterministic_actors_explore_with_clipped_gaussian_noise(name: str) -> None:
    agent = _agent(name)
    obs = torch.randn(1, 500, OBS, generator=torch.Generator().manual_seed(0))
    mean = agent.act(obs, deterministic=True)
    noisy = agent.act(obs, deterministic=False, generators=[torch.Generator().manual_seed(1)])
    assert bool((noisy.abs() <= 1).all()) and not torch.equal(mean, noisy)
    assert 0.05 < float((noisy - mean).std()) < 0.15  # exploration_noise 0.1, a little less where clipped


@pytest.mark.parametrize("name", ["sac", "td3", "ddpg", "dqn", "dhmbpo"])
def test_the_deterministic_policy_acts_as_the_agent_and_is_a_copy(name: str) -> None:
    """What export takes: raw observations to the greedy or mean action (DQN: its index), normalization included,
    in nn.Linear layers, unaffected by later changes to the agent."""
    torch.manual_seed(0)
    config = build_config({"algo": "dhmbpo"} if name == "dhmbpo" else {"agent": {"name": name}, name: {"hidden": 32}})
    agent = make_agent(config, OBS, ACT)
    if name == "dhmbpo":
        assert isinstance(agent, DHMBPOAgent)
        agent.actor.obs_mean.copy_(torch.linspace(-2.0, 2.0, OBS))
        agent.actor.obs_std.copy_(torch.linspace(0.5, 3.0, OBS))
    obs = 3.0 * torch.randn(64, OBS, generator=torch.Generator().manual_seed(1))
    policy = agent.deterministic_policy()
    expected = lone_act(agent, obs, deterministic=True)
    with torch.no_grad():
        got = policy(obs)
    if name == "dqn":
        assert got.dtype == torch.int64 and torch.equal(got, expected.argmax(dim=-1))
    else:
        assert got.shape == (64, ACT) and torch.allclose(got, expected, rtol=0, atol=1e-6)
    weights = {id(p) for m in policy.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    assert weights and all(id(p) in weights or not p.requires_grad for p in policy.parameters())
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(1.0)
        assert torch.equal(policy(obs), got)
