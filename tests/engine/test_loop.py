"""The training loop on tiny runs: determinism, the SAC-only path, ablation switches, the update mode."""

import numpy as np
import pytest
import torch

from mbpo_cli.config.load import build_config
from mbpo_cli.engine.events import EpochEvent, NoticeEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import build_run

TINY = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 3},
    "rollout": {"batch_size": 200, "schedule": [1, 15, 1, 1], "train_freq": 50},
    "agent": {"updates_per_step": 2, "batch_size": 32},
    "sac": {"hidden": 32},
    "train": {"steps": 300, "epoch_length": 100, "init_steps": 100, "eval_episodes": 1, "seed": 3, "threads": 1},
}


def _metrics(config: dict) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    state = build_run(build_config(config))
    seen: list[dict[str, float]] = []
    train(state, lambda e: seen.append({k: v for k, v in e.metrics.items() if not k.startswith("time_")})
          if isinstance(e, EpochEvent) else None)
    return seen, state.agent.state_dict()


def test_same_seed_same_numbers() -> None:
    first, weights1 = _metrics(TINY)
    second, weights2 = _metrics(TINY)
    assert first == second
    assert all(torch.equal(weights1[k], weights2[k]) for k in weights1)
    other, _ = _metrics({**TINY, "train": {**TINY["train"], "seed": 4}})
    assert other != first


def test_sac_only_has_no_model_and_reports_every_epoch() -> None:
    seen, _ = _metrics({**TINY, "algo": "model_free"})
    assert len(seen) == 3
    assert "model_holdout_loss" not in seen[-1] and "critic_loss" in seen[-1]


@pytest.mark.parametrize(
    "section",
    [{"rollout": {**TINY["rollout"], "from_initial_states": True}},
     {"model": {**TINY["model"], "use_elites": False}},
     {"model": {**TINY["model"], "deterministic": True}}],
)
def test_ablation_switches_run(section: dict) -> None:
    seen, _ = _metrics({**TINY, **section, "train": {**TINY["train"], "steps": 200}})
    assert seen[-1]["model_buffer_size"] > 0 and np.isfinite(seen[-1]["model_holdout_loss"])


def test_update_mode_is_decided_once_after_exploration() -> None:
    """On CPU the run decides (eagerly) how its updates run when exploration ends, and says nothing about it."""
    config = {**TINY, "train": {**TINY["train"], "steps": 150}}
    state = build_run(build_config(config))
    events: list[object] = []
    train(state, events.append, should_stop=lambda: state.env_step >= 100)
    assert not state.updates_prepared and state.update_mode == ""  # still exploring: nothing captured yet
    train(state, events.append)
    assert state.update_mode == ("SAC updates: eager (CUDA graphs need a CUDA device); "
                                 "model training: eager (CUDA graphs need a CUDA device)")
    assert not any(isinstance(e, NoticeEvent) for e in events)
    off = build_run(build_config({**config, "train": {**config["train"], "cuda_graphs": False}}))
    train(off)
    assert off.update_mode == "SAC updates and model training: eager (train.cuda_graphs is off)"
