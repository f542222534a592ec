"""Model diagnostics: their shapes on a short real run, compounding open-loop error, and that they change nothing."""

from collections.abc import Sequence

import torch

from mbpo_cli.config.load import build_config
from mbpo_cli.engine.diagnostics import OPEN_LOOP_PREFIX, imagined_returns, sequence_starts
from mbpo_cli.engine.events import EpochEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.model_env import ModelEnv
from mbpo_cli.engine.state import build_run
from mbpo_cli.nn.batch import Batch
from tests.engine.test_loop import TINY

SHORT = {**TINY, "model": {**TINY["model"], "max_epochs": 20}, "diagnostics": {"horizon": 8, "samples": 64},
         "train": {**TINY["train"], "steps": 400}}


def _run(config: dict) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    state = build_run(build_config(config))
    seen: list[dict[str, float]] = []
    train(state, lambda e: seen.append(e.metrics) if isinstance(e, EpochEvent) else None)
    return seen, state.agent.state_dict()


def test_diagnostics_on_a_short_real_run() -> None:
    seen, _ = _run(SHORT)
    assert "diag_model_error" not in seen[0]  # exploration: no model yet
    for metrics in seen[1:]:
        curve = [metrics[f"{OPEN_LOOP_PREFIX}{h}"] for h in range(1, 9)]
        assert f"{OPEN_LOOP_PREFIX}9" not in metrics
        assert all(v >= 0 for v in curve)
        assert curve[-1] > curve[0]  # errors compound: h = H is worse than h = 1
        for key in ("diag_model_error", "diag_reward_error", "diag_disagreement", "diag_model_return"):
            assert torch.isfinite(torch.tensor(metrics[key])), key
        assert metrics["diag_disagreement"] >= 0 and metrics["time_diag"] > 0
        assert 0 < metrics["diag_model_return"] <= 1000  # InvertedPendulum pays at most 1 per step


def test_diagnostics_change_no_number_of_the_run() -> None:
    on, weights_on = _run(SHORT)
    off, weights_off = _run({**SHORT, "diagnostics": {"enabled": False}})
    assert all(torch.equal(weights_on[k], weights_off[k]) for k in weights_on)
    for a, b in zip(on, off, strict=True):
        shared = {k for k in b if not k.startswith("time_")}
        assert {k: a[k] for k in shared} == {k: b[k] for k in shared}
    assert not any(k.startswith("diag_") for m in off for k in m)


def test_sequence_starts_stay_inside_one_episode() -> None:
    # rows 0-3 one episode (row 3 terminates), rows 4-6 the next
    obs = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0]])
    next_obs = torch.tensor([[1.0], [2.0], [3.0], [4.0], [11.0], [12.0], [13.0]])
    done = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    data = Batch(obs, torch.zeros(7, 1), torch.zeros(7), next_obs, done)
    assert sequence_starts(data, 3).tolist() == [0, 1, 4]
    assert sequence_starts(data, 4).tolist() == [0]
    assert sequence_starts(data, 8).tolist() == []


class BlowingUpModel:
    """Pays 1 per step; its predicted state doubles each step and overflows to inf after a few."""

    def mean_step(self, obs: torch.Tensor, act: torch.Tensor, members: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(obs.shape[:2]), obs * 1e30  # a pack's S x N, S x N x D


class StillAgent:
    def act(self, obs: torch.Tensor, deterministic: bool,
            generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        return torch.zeros(*obs.shape[:2], 1)


def test_an_imagined_episode_ends_where_the_model_overflows() -> None:
    """A diverging model's state turns inf, which no termination function catches: the episode ends there, unpaid,
    and the model return stays finite (a NaN would never reach the registry)."""
    env = ModelEnv(BlowingUpModel(), torch.arange(1), lambda x: torch.zeros(x.shape[0], dtype=torch.bool))  # type: ignore[arg-type]
    returns = imagined_returns(env, StillAgent(), torch.ones(3, 2), cap=1000)  # type: ignore[arg-type]
    assert returns.tolist() == [1.0, 1.0, 1.0]  # 1e30 is paid; 1e60 overflows float32 and ends the episode
