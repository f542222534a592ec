"""The uncertainty-adaptive horizon: branches run while the members agree, stop where they do not, and the realized
lengths are logged; the model buffer holds exactly the retained generations however long the branches were."""

import math
from collections.abc import Sequence

import pytest
import torch

from mbpo_cli.config.load import build_config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.events import EpochEvent, RolloutEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.model_env import ModelEnv
from mbpo_cli.engine.rollout import adaptive_rollout
from mbpo_cli.engine.state import build_run
from mbpo_cli.models.ensemble import disagreement
from tests.engine.test_loop import TINY

EDGE = 5.0


class DriftingModel:
    """Two members on a line: each step moves x by +1; they agree left of EDGE and disagree from EDGE on."""

    def predict_members(self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        n = obs.shape[1]  # a pack of one: 1 x N x D
        step = torch.ones(2, n, 1)
        step[1, obs[0, :, 0] >= EDGE] = 3.0  # the second member disagrees past the edge
        mean = torch.cat([torch.zeros(2, n, 1), step], dim=-1).unsqueeze(0)  # 1 x M x N x [reward, delta x]
        return mean, torch.full_like(mean, -20.0)


class StillAgent:
    def act(self, obs: torch.Tensor, deterministic: bool,
            generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        return torch.zeros(*obs.shape[:2], 1)


def _rollout(start: list[float], max_length: int = 10) -> tuple[torch.Tensor, ReplayBuffer, float]:
    buffer = ReplayBuffer(1000, 1, 1, torch.device("cpu"))
    env = ModelEnv(DriftingModel(), torch.arange(2), lambda x: torch.zeros(x.shape[0], dtype=torch.bool))  # type: ignore[arg-type]
    stats = adaptive_rollout(env, StillAgent(), torch.tensor(start).unsqueeze(-1), max_length, 1.0, buffer,  # type: ignore[arg-type]
                             torch.Generator().manual_seed(0))
    return stats.lengths, buffer, stats.threshold


def test_branches_run_while_members_agree_and_stop_where_they_disagree() -> None:
    # 40 starts in the agreeing region (x = 0.5 .. 4.5), one past the edge: the 95th percentile of the first
    # step's disagreement is 0, so a branch keeps each step taken left of the edge and stops at it.
    start = [0.5 + (i % 5) for i in range(40)] + [6.5]
    lengths, buffer, threshold = _rollout(start)
    expected = [math.ceil(EDGE - x) if x < EDGE else 0 for x in start]
    assert lengths.tolist() == expected
    assert threshold == pytest.approx(0.0, abs=1e-6)
    assert len(buffer) == sum(expected)
    assert float(buffer.data.obs[: len(buffer), 0].max()) < EDGE  # nothing from where the members disagree


def test_the_maximum_length_caps_agreeing_branches() -> None:
    lengths, _, _ = _rollout([0.5] * 20, max_length=3)
    assert lengths.tolist() == [3] * 20


def test_disagreement_is_zero_for_agreeing_members_and_scale_free() -> None:
    mean = torch.randn(1, 4, 3).expand(5, 4, 3).clone()
    logvar = torch.zeros(5, 4, 3)
    assert torch.allclose(disagreement(mean, logvar), torch.zeros(4), atol=1e-6)
    spread = mean + torch.randn(5, 4, 3)
    scaled = disagreement(spread * 10.0, logvar + 2 * math.log(10.0))
    assert torch.allclose(disagreement(spread, logvar), scaled, rtol=1e-4)
    assert bool((disagreement(spread, logvar) > 0).all())


def test_a_run_logs_realized_lengths_and_keeps_exactly_the_retained_generations() -> None:
    config = build_config({**TINY, "rollout": {**TINY["rollout"], "adaptive": True, "adaptive_max_length": 4,
                                               "retain_epochs": 1}})
    state = build_run(config)
    rollouts: list[RolloutEvent] = []
    epochs: list[dict[str, float]] = []

    def record(event: object) -> None:
        if isinstance(event, RolloutEvent):
            rollouts.append(event)
            # the buffer holds the last epoch_length / train_freq = 2 generations, exactly
            seed = state.lone
            assert len(seed.model_buffer) == sum(seed.model_generations[-2:]) == seed.model_buffer.capacity
        elif isinstance(event, EpochEvent):
            epochs.append(event.metrics)

    train(state, record)
    assert [e.env_step for e in rollouts] == [100, 150, 200, 250]
    for event in rollouts:
        m = event.metrics
        assert 0 <= m["rollout_length_p10"] <= m["rollout_length_p90"] <= 4 and 0 < m["rollout_length_mean"] <= 4
        assert m["rollout_threshold"] > 0 and 0 <= m["rollout_stopped_uncertain"] <= 1
        assert m["rollout_transitions"] == pytest.approx(m["rollout_length_mean"] * 200)
    assert len(state.lone.model_generations) == 2
    assert epochs[-1]["rollout_k"] == 4
