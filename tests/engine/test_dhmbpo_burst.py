"""DHMBPO in the training loop (mbpo_cli.engine.burst, mbpo_cli.engine.double_horizon): when its learning bursts
fall and what they do, the policy frozen between them, and the distribution rollouts' states."""

from __future__ import annotations

import torch
from dhmbpo_tiny import TINY_DHMBPO

from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.agents.value_expansion import Dynamics
from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.double_horizon import StateBuffer, distribution_rollout
from mbpo_cli.engine.events import EpochEvent, Event, StepEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import build_run
from mbpo_cli.models.dynamics import DynamicsEnsemble
from mbpo_cli.nn.batch import Batch


def test_bursts_end_iterations_from_exploration_on_and_the_policy_is_frozen_between() -> None:
    """Bursts after steps 200 (the first, its model limits and updates multiplied), 300 and 400; the actor changes
    only in them; evaluations, metrics and the update counts follow."""
    config = resolve_config(preset="inverted_pendulum", algo="dhmbpo", steps=400, seed=3,
                            overrides=[*TINY_DHMBPO, "train.device=cpu", "dhmbpo.first_updates_factor=3",
                                       "dhmbpo.first_model_factor=2"])
    state = build_run(config)
    agent = state.agent
    assert isinstance(agent, DHMBPOAgent)
    changes: list[int] = []
    metrics: dict[int, dict[str, float]] = {}
    last = [p.detach().clone() for p in agent.actor.parameters()]

    def on_event(event: Event) -> None:
        if isinstance(event, StepEvent):
            now = [p.detach().clone() for p in agent.actor.parameters()]
            if any(not torch.equal(a, b) for a, b in zip(last, now, strict=True)):
                changes.append(event.env_step)
            last[:] = now
        elif isinstance(event, EpochEvent):
            metrics[event.env_step] = event.metrics

    train(state, on_event)
    assert changes == [200, 300, 400]
    updates = [metrics[s]["agent_updates"] for s in (100, 200, 300, 400)]
    assert updates == [0, 10 + 3 * 20, 10 + 3 * 20 + 30, 10 + 3 * 20 + 60]
    assert "actor_loss" not in metrics[100] and {"actor_loss", "critic_loss", "alpha", "q_upper"} <= set(metrics[200])
    assert metrics[200]["model_epochs"] <= 2 * 3 * 1 * 1.61 + 1 and metrics[300]["model_epochs"] <= 3 * 1.61 + 1
    assert metrics[200]["dr_buffer_states"] == 256  # the DRs of 20 updates, more than the buffer keeps
    assert all(metrics[s]["time_model"] > 0 and metrics[s]["time_agent"] > 0 for s in (200, 300, 400))
    assert torch.equal(agent.actor.obs_mean, state.double_horizon.model.obs_mean)  # type: ignore[union-attr]


def linear_dynamics() -> Dynamics:
    def step(obs: torch.Tensor, act: torch.Tensor, noise: torch.Tensor, order: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        return obs[:, 0], obs + 0.5 + act.sum(dim=1, keepdim=True) * 0.0

    return Dynamics(step=step, terminated=lambda obs: obs[:, 0] > 2.2, members=2)


def test_a_distribution_rollout_keeps_the_states_before_each_branch_terminates() -> None:
    """Every state of a branch is kept up to, not including, its first terminal one, the real start included: here
    each step adds 0.5 and a state over 2.2 terminates. Rounds repeat until enough states are in."""
    config = resolve_config(preset="inverted_pendulum", algo="dhmbpo",
                            overrides=[*TINY_DHMBPO, "dhmbpo.distribution_horizon=6", "dhmbpo.distribution_starts=4",
                                       "dhmbpo.model.members=2"])
    agent = DHMBPOAgent(4, 1, config.dhmbpo)
    model = DynamicsEnsemble(4, 1, config.dhmbpo.model)  # identity normalizers: real states are the starts
    kept = {}
    for start in (0.0, 3.0):
        real = ReplayBuffer(1, 4, 1, torch.device("cpu"))
        state = torch.full((1, 4), start)
        real.add(Batch(state, torch.zeros(1, 1), torch.zeros(1), state, torch.zeros(1)))
        buffer = StateBuffer(100, 4, torch.device("cpu"))
        added = distribution_rollout(agent, linear_dynamics(), real, model, buffer, 5,
                                     torch.Generator().manual_seed(0))
        assert added == len(buffer)
        kept[start] = buffer.states[: len(buffer), 0].tolist()
    assert kept[0.0] == [0.0] * 4 + [0.5] * 4 + [1.0] * 4 + [1.5] * 4 + [2.0] * 4  # 2.5 ends each branch
    assert kept[3.0] == [3.0] * 8  # 3.5 ends each at once: two rounds of four to reach five states


def test_the_state_buffer_is_first_in_first_out() -> None:
    buffer = StateBuffer(5, 1, torch.device("cpu"))
    buffer.add(torch.arange(3.0).unsqueeze(1))
    buffer.add(torch.arange(3.0, 7.0).unsqueeze(1))
    assert len(buffer) == 5 and sorted(buffer.states[:, 0].tolist()) == [2, 3, 4, 5, 6]
    buffer.add(torch.arange(10.0, 17.0).unsqueeze(1))
    assert sorted(buffer.states[:, 0].tolist()) == [12, 13, 14, 15, 16]
    assert set(buffer.sample(50, torch.Generator().manual_seed(0))[:, 0].tolist()) == {12, 13, 14, 15, 16}
