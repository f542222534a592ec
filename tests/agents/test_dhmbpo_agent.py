"""DHMBPO's actor-critic (mbpo_cli.agents.dhmbpo, mbpo_cli.agents.value_expansion): the training rollout and its
value-expansion target against a hand computation on a known linear system, the critics' reductions, and where the
actor's gradient goes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mbpo_cli.agents.dhmbpo import DHMBPOActor, DHMBPOAgent
from mbpo_cli.agents.value_expansion import (
    Dynamics,
    RolloutNoise,
    actor_return,
    discounts,
    quantiles,
    training_rollout,
    value_target,
)
from mbpo_cli.config.schema import DHMBPOConfig, DynamicsConfig
from mbpo_cli.engine.double_horizon import bind_model
from mbpo_cli.models.dynamics import DynamicsEnsemble
from mbpo_cli.models.termination.known import never
from mbpo_cli.nn.batch import Batch


@pytest.fixture(autouse=True)
def one_thread() -> None:
    """One torch thread (restored by the suite's conftest)."""
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# The value-expansion target on a known linear system, by hand
# ---------------------------------------------------------------------------------------------

A = torch.tensor([[0.9, 0.2], [-0.1, 0.8]], dtype=torch.float64)
B_ACT = torch.tensor([[0.5], [0.3]], dtype=torch.float64)
C_REWARD = torch.tensor([1.0, -2.0], dtype=torch.float64)
D_REWARD = torch.tensor([0.7], dtype=torch.float64)
Q_STATE, Q_ACT = torch.tensor([3.0, -1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
LIMIT = 1.0
"""A state terminates when its first coordinate exceeds this."""
MU, RHO = 0.3, -0.5
"""The actor's (constant) pre-tanh mean and raw std."""


def linear_step(obs: torch.Tensor, act: torch.Tensor, noise: torch.Tensor, order: torch.Tensor) -> tuple[
        torch.Tensor, torch.Tensor]:
    """A deterministic 'model' of known linear dynamics and reward (noise and member order ignored)."""
    obs64, act64 = obs.double(), act.double()
    reward = obs64 @ C_REWARD + act64 @ D_REWARD
    return reward.float(), (obs64 @ A.T + act64 @ B_ACT.T).float()


def constant_actor() -> DHMBPOActor:
    """An actor whose Gaussian is N(MU, softplus(RHO) + 1e-5) whatever the state (a zero output layer)."""
    actor = DHMBPOActor(2, 1, hidden=8, layers=1)
    with torch.no_grad():
        actor.net.weights[-1].zero_()
        actor.net.biases[-1].copy_(torch.tensor([[[MU, RHO]]]))
    return actor


def hand_rollout(starts: torch.Tensor, eps: torch.Tensor, horizon: int) -> dict[str, list]:
    """States, actions, log-probabilities, rewards and masks by hand (float64, sample by sample)."""
    std = math.log1p(math.exp(RHO)) + 1e-5
    out: dict[str, list] = {"states": [], "actions": [], "logps": [], "rewards": [], "masks": []}
    for i in range(starts.shape[0]):
        s = starts[i].double()
        alive = 1.0
        states, actions, logps, rewards, masks = [s], [], [], [], [1.0]
        for t in range(horizon + 1):
            e = float(eps[t, i, 0])
            u = MU + std * e
            a = math.tanh(u)
            logp = -0.5 * e * e - math.log(std) - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u) ** 2)
            actions.append(a)
            logps.append(logp)
            if t == horizon:
                break
            a_vec = torch.tensor([a], dtype=torch.float64)
            rewards.append(float(s @ C_REWARD + a_vec @ D_REWARD))
            s = A @ s + B_ACT @ a_vec
            if float(s[0]) > LIMIT:
                alive = 0.0
            states.append(s)
            masks.append(alive)
        for key, value in zip(out, (states, actions, logps, rewards, masks), strict=True):
            out[key].append(value)
    return out


def test_value_expansion_target_and_actor_return_on_a_linear_system() -> None:
    """y = r_0 + sum_{t=1}^{H-1} g^t m_t (r_t - a log pi_t) + g^H m_H (Q(s_H, a_H) - a log pi_H), and the actor's
    return with the entropy term at t = 0 too, computed by hand for branches that terminate at step 1, at the last
    step and never (a terminated branch keeps its terminating reward and loses everything after)."""
    horizon, gamma, alpha = 3, 0.9, 0.2
    starts = torch.tensor([[0.0, 0.0], [1.3, -0.5], [0.5, 2.0], [-1.0, 0.5]])
    noise = RolloutNoise(actions=torch.randn(horizon + 1, 4, 1, generator=torch.Generator().manual_seed(1)),
                         model=torch.zeros(horizon, 4, 2), orders=torch.zeros(horizon, 2))
    dynamics = Dynamics(step=linear_step, terminated=lambda obs: obs[:, 0] > LIMIT, members=2)
    with torch.no_grad():
        rollout = training_rollout(constant_actor().sample, dynamics, starts, noise)

    hand = hand_rollout(starts, noise.actions, horizon)
    assert rollout.masks.tolist() == [[m[t] for m in hand["masks"]] for t in range(horizon + 1)]
    assert rollout.masks[:, 1].tolist() == [1.0, 0.0, 0.0, 0.0]  # over 1 at once, back under it later: done
    assert float(rollout.states[2, 1, 0]) < LIMIT
    assert rollout.masks[:, 2].tolist() == [1.0, 1.0, 1.0, 0.0]  # the last step ends it: no Q term
    for i in range(4):
        for t in range(horizon + 1):
            assert torch.allclose(rollout.states[t, i].double(), hand["states"][i][t], atol=1e-5)
            assert rollout.actions[t, i, 0].item() == pytest.approx(hand["actions"][i][t], abs=1e-6)
            assert rollout.logps[t, i].item() == pytest.approx(hand["logps"][i][t], abs=1e-4)
        for t in range(horizon):
            assert rollout.rewards[t, i].item() == pytest.approx(hand["rewards"][i][t], abs=1e-5)

    def q_of(i: int) -> float:
        return float(hand["states"][i][horizon] @ Q_STATE + Q_ACT * hand["actions"][i][horizon])

    expected_y, expected_g = [], []
    for i in range(4):
        r, lp, m = hand["rewards"][i], hand["logps"][i], hand["masks"][i]
        y = r[0] + sum(gamma**t * m[t] * (r[t] - alpha * lp[t]) for t in range(1, horizon))
        y += gamma**horizon * m[horizon] * (q_of(i) - alpha * lp[horizon])
        expected_y.append(y)
        expected_g.append(y - alpha * lp[0])
    terminal_q = torch.tensor([q_of(i) for i in range(4)], dtype=torch.float32)
    d = discounts(gamma, horizon)
    got_y = value_target(rollout, terminal_q, torch.tensor(alpha), d)
    got_g = actor_return(rollout, terminal_q, torch.tensor(alpha), d)
    assert got_y.tolist() == pytest.approx(expected_y, abs=1e-4)
    assert got_g.tolist() == pytest.approx(expected_g, abs=1e-4)
    assert d.tolist() == pytest.approx([1.0, 0.9, 0.81, 0.729])


def test_rollout_noise_layout_and_member_orders() -> None:
    horizon, batch, act_dim, obs_dim, members = 2, 6, 1, 3, 3
    flat = torch.arange(RolloutNoise.size(horizon, batch, act_dim, obs_dim, members) + 5, dtype=torch.float32)
    noise = RolloutNoise.read(flat, horizon, batch, act_dim, obs_dim, members)
    assert noise.actions.shape == (3, 6, 1) and noise.model.shape == (2, 6, 3) and noise.orders.shape == (2, 3)
    assert noise.model[0, 0, 0] == 18 and noise.orders[-1, -1] == RolloutNoise.size(2, 6, 1, 3, 3) - 1
    seen = []

    def step(obs: torch.Tensor, act: torch.Tensor, model_noise: torch.Tensor, order: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        seen.append(order.tolist())
        return obs[:, 0], obs

    orders = torch.tensor([[0.3, -1.0, 2.0], [5.0, 4.0, 3.0]])
    training_rollout(lambda s, e: (e, e[:, 0]), Dynamics(step, never, 3), torch.zeros(6, 3),
                     RolloutNoise(torch.zeros(3, 6, 1), torch.zeros(2, 6, 3), orders))
    assert seen == [[1, 0, 2], [2, 1, 0]]  # the argsort of each step's draws


def test_quantiles_agree_with_torch() -> None:
    values = torch.randn(5, 37, generator=torch.Generator().manual_seed(3))
    low, high = quantiles(values, 0.01)
    assert low.item() == pytest.approx(torch.quantile(values, 0.01).item(), abs=1e-6)
    assert high.item() == pytest.approx(torch.quantile(values, 0.99).item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# The agent: critics' reductions, bounds, and where the actor's gradient goes
# ---------------------------------------------------------------------------------------------

SMALL = DHMBPOConfig(actor_hidden=16, critic_hidden=16, training_horizon=2, batch_size=8,
                     model=DynamicsConfig(members=4, hidden=16))


def bound_agent(config: DHMBPOConfig = SMALL, obs_dim: int = 3, act_dim: int = 2) -> tuple[DHMBPOAgent,
                                                                                         DynamicsEnsemble]:
    torch.manual_seed(0)
    agent = DHMBPOAgent(obs_dim, act_dim, config)
    model = DynamicsEnsemble(obs_dim, act_dim, config.model)
    bind_model(agent, model, never)
    return agent, model


def test_target_is_the_clipped_minimum_of_the_drawn_target_critics() -> None:
    agent, _ = bound_agent()
    with torch.no_grad():
        agent.critic_target.net.weights[-1].zero_()  # z_k = its bias, whatever the input
        agent.critic_target.net.biases[-1].copy_(torch.tensor([0.5, -0.2, 0.9, -0.7, 0.1]).view(5, 1, 1))
        agent.q_bounds.copy_(torch.tensor([-2.0, 25.0]))
    center, width = torch.tensor(10.0), torch.tensor(20.0)
    obs, act = torch.randn(4, 3), torch.rand(4, 2)
    assert agent.target_q(obs, act, torch.tensor([0, 2]), center, width).tolist() == pytest.approx([20.0] * 4)
    assert agent.target_q(obs, act, torch.tensor([4, 1]), center, width).tolist() == pytest.approx([6.0] * 4)
    assert agent.target_q(obs, act, torch.tensor([3, 2]), center, width).tolist() == pytest.approx([-2.0] * 4)
    assert agent.target_q(obs, act, torch.tensor([2]), center, width).tolist() == pytest.approx([25.0] * 4)


def rollout_noise(agent: DHMBPOAgent, batch: int, seed: int = 0) -> RolloutNoise:
    horizon, members = agent.rollout_horizon, agent.config.model.members
    size = RolloutNoise.size(horizon, batch, agent.act_dim, agent.obs_dim, members)
    return RolloutNoise.read(torch.randn(size, generator=torch.Generator().manual_seed(seed)), horizon, batch,
                             agent.act_dim, agent.obs_dim, members)


def test_actor_gradient_flows_through_the_model_and_never_into_model_or_critic_weights() -> None:
    """H = 1, fresh critics (z = 0: Q is constant) and a vanishing temperature: the actor's return depends on its
    parameters only through the model's reward of (s_0, a_0). Its gradient reaches every actor parameter, and
    vanishes when the model's reward output is zeroed; the model's and critics' weights get none."""
    agent, model = bound_agent(dataclasses.replace(SMALL, training_horizon=1, init_alpha=1e-30))
    assert agent.dynamics is not None
    starts = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    alpha, center, width = agent.log_alpha.detach().exp(), torch.tensor(5.0), torch.tensor(2.0)

    def actor_gradient() -> list[torch.Tensor]:
        agent.actor.zero_grad(set_to_none=True)
        rollout = training_rollout(agent.actor.sample, agent.dynamics, starts, rollout_noise(agent, 8))
        assert rollout.states.requires_grad and rollout.rewards.requires_grad
        agent.actor_loss(rollout, None, center, width, alpha).backward()
        grads = [p.grad for p in agent.actor.parameters()]
        assert all(g is not None for g in grads)
        return [g for g in grads if g is not None]

    assert all(g.abs().sum() > 1e-6 for g in actor_gradient())
    untouched = [*model.parameters(), *agent.critic.parameters(), *agent.critic_target.parameters(), agent.log_alpha]
    assert all(p.grad is None for p in untouched)

    with torch.no_grad():
        model.net.weights[-1][..., 0] = 0.0
        model.net.biases[-1][..., 0] = 0.0
    assert max(float(g.abs().max()) for g in actor_gradient()) < 1e-20


def test_without_a_training_rollout_the_critics_learn_one_model_step_and_the_actor_only_from_them() -> None:
    """H = 0 (the "no training rollout" ablation): each update rolls one model step for the critics' target,
    r_0 + gamma m_1 (Q(s_1, a_1) - alpha log pi_1) with the target critics' clipped minimum, and the actor's loss is
    SAC's, -(Q_bar(s_0, a_0) - alpha log pi_0): zeroing the model's reward output changes nothing of the actor's
    gradient, and the critics' weights get none from it."""
    config = dataclasses.replace(SMALL, training_horizon=0, critic_dropout=0.0)
    agent, model = bound_agent(config)
    assert agent.dynamics is not None and agent.rollout_horizon == 1
    starts = torch.randn(8, 3, generator=torch.Generator().manual_seed(7))
    noise = rollout_noise(agent, 8)  # one model step's draws: a rollout of the critics' target
    assert noise.model.shape[0] == 1
    alpha, center, width = agent.log_alpha.detach().exp(), torch.tensor(5.0), torch.tensor(2.0)

    rollout = training_rollout(agent.actor.sample, agent.dynamics, starts, noise)
    frozen = agent.critic.net.detached()
    q0 = center + width * agent.critic(rollout.states[0], rollout.actions[0], None, frozen).mean(dim=0)
    loss = agent.actor_loss(rollout, None, center, width, alpha)
    assert loss.item() == pytest.approx(-(q0 - alpha * rollout.logps[0]).mean().item(), rel=1e-6)
    with torch.no_grad():
        pick = torch.tensor([0, 1])
        target = agent.target_q(rollout.states[1], rollout.actions[1], pick, center, width)
        y = value_target(rollout, target, alpha, agent.discount)
        by_hand = rollout.rewards[0] + config.gamma * rollout.masks[1] * (target - alpha * rollout.logps[1])
    assert torch.allclose(y, by_hand, atol=1e-5)

    def actor_gradient() -> list[torch.Tensor]:
        agent.actor.zero_grad(set_to_none=True)
        fresh = training_rollout(agent.actor.sample, agent.dynamics, starts, noise)
        agent.actor_loss(fresh, None, center, width, alpha).backward()
        return [p.grad.clone() for p in agent.actor.parameters() if p.grad is not None]

    before = actor_gradient()
    assert len(before) == len(list(agent.actor.parameters())) and any(g.abs().sum() > 0 for g in before)
    with torch.no_grad():
        model.net.weights[-1][..., 0] = 0.0
        model.net.biases[-1][..., 0] = 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, actor_gradient(), strict=True))
    assert all(p.grad is None for p in [*model.parameters(), *agent.critic.parameters()])


def test_an_update_steps_actor_critics_targets_and_temperature_never_the_model() -> None:
    agent, model = bound_agent()
    starts = torch.randn(8, 3, generator=torch.Generator().manual_seed(4))

    def snapshot() -> dict[str, list[torch.Tensor]]:
        parts = {"model": model, "actor": agent.actor, "critic": agent.critic, "target": agent.critic_target}
        saved = {name: [p.detach().clone() for p in part.parameters()] for name, part in parts.items()}
        saved["alpha"] = [agent.log_alpha.detach().clone()]
        return saved

    def changed(before: dict[str, list[torch.Tensor]]) -> set[str]:
        after = snapshot()
        return {k for k in before if any(not torch.equal(a, b) for a, b in zip(before[k], after[k], strict=True))}

    before = snapshot()
    info = agent.learn(starts, torch.Generator().manual_seed(5), critic_only=True)
    assert changed(before) == {"critic", "target"} and set(info) == {"critic_loss", "q_mean"}
    assert bool(agent.bounds_set) and agent.q_bounds[0] < agent.q_bounds[1]
    before = snapshot()
    info = agent.learn(starts, torch.Generator().manual_seed(6), critic_only=False)
    assert changed(before) == {"critic", "target", "actor", "alpha"}
    assert set(info) == {"critic_loss", "q_mean", "actor_loss", "alpha_loss", "entropy"}
    assert all(p.grad is None for p in model.parameters())


def test_the_first_update_sets_the_bounds_and_later_ones_move_them_slowly() -> None:
    agent, _ = bound_agent(dataclasses.replace(SMALL, bound_rate=0.25))
    rollout = training_rollout(agent.actor.sample, agent.dynamics, torch.randn(8, 3), rollout_noise(agent, 8))
    alpha = torch.tensor(0.1)
    low, high = quantiles(rollout.rewards - alpha * rollout.logps[:-1], 0.01)
    fresh = torch.stack([low, high]) / (1 - SMALL.gamma)
    center, width = agent.update_bounds(rollout, alpha)
    assert torch.allclose(agent.q_bounds, fresh) and center == fresh.mean() and width == (fresh[1] - fresh[0]) / 2
    agent.q_bounds.copy_(torch.tensor([0.0, 4.0]))
    agent.update_bounds(rollout, alpha)
    assert torch.allclose(agent.q_bounds, torch.tensor([0.0, 4.0]) * 0.75 + fresh * 0.25)


def test_the_protocols_update_starts_from_raw_observations() -> None:
    """`update(batch, generator)` (the engine's agent protocol) is one joint update from `batch.obs` normalized by
    the actor's statistics; on a CPU its CUDA-graph capture says it stays eager and captures nothing."""
    first, _ = bound_agent()
    second, _ = bound_agent()
    for agent in (first, second):
        agent.actor.obs_mean.fill_(2.0)
        agent.actor.obs_std.fill_(3.0)
    raw = torch.randn(8, 3, generator=torch.Generator().manual_seed(7)) * 3 + 2
    batch = Batch(*(t.unsqueeze(0) for t in (raw, torch.zeros(8, 2), torch.zeros(8), raw, torch.zeros(8))))
    got = first.update(batch, [torch.Generator().manual_seed(8)])
    want = second.learn((raw - 2.0) / 3.0, torch.Generator().manual_seed(8), critic_only=False)
    assert all(v.shape == (1,) for v in got.values())
    assert {k: v.item() for k, v in got.items()} == pytest.approx({k: v.item() for k, v in want.items()})
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                 strict=True))
    assert first.use_cuda_graph(batch, [torch.Generator()]) == "eager (CUDA graphs need a CUDA device)"
    assert not first.graphs
