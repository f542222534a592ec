"""Unit tests: rollout schedule, termination functions, replay buffer, rollouts, determinism."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli import termination
from mbpo_cli.buffer import Batch, ReplayBuffer, mixed_batch
from mbpo_cli.config import build_config
from mbpo_cli.engine import EpochEvent, NoticeEvent, build_run, train
from mbpo_cli.rollout import model_buffer_capacity, rollout_length


def test_rollout_length_schedule() -> None:
    hopper = (20, 150, 1, 15)
    assert [rollout_length(e, hopper) for e in (0, 19, 20)] == [1, 1, 1]
    # floor(1 + (e - 20) / 130 * 14)
    assert rollout_length(30, hopper) == 2
    assert rollout_length(85, hopper) == 8
    assert rollout_length(149, hopper) == 14
    assert rollout_length(150, hopper) == 15
    assert rollout_length(500, hopper) == 15
    assert rollout_length(60, (20, 100, 1, 25)) == 13
    assert rollout_length(7, (1, 15, 1, 1)) == 1


def test_model_buffer_capacity() -> None:
    assert model_buffer_capacity(15, 100_000, 1000, 250, 1) == 6_000_000
    assert model_buffer_capacity(25, 100_000, 1000, 1000, 5) == 12_500_000


def _obs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_termination_hand_built() -> None:
    hop = _obs([[1.25, 0.0] + [0.0] * 9, [0.6, 0.0] + [0.0] * 9, [1.2, 0.25] + [0.0] * 9,
                [1.2, 0.0, 150.0] + [0.0] * 8, [float("nan"), 0.0] + [0.0] * 9])
    assert termination.hopper(hop).tolist() == [False, True, True, True, True]
    walker = _obs([[1.2, 0.1] + [0.0] * 15, [0.7, 0.0] + [0.0] * 15, [2.1, 0.0] + [0.0] * 15,
                   [1.2, 1.2] + [0.0] * 15])
    assert termination.walker2d(walker).tolist() == [False, True, True, True]
    ant = _obs([[0.55] + [0.0] * 26, [0.1] + [0.0] * 26, [1.1] + [0.0] * 26, [0.5, float("inf")] + [0.0] * 25])
    assert termination.ant(ant).tolist() == [False, True, True, True]
    humanoid = _obs([[1.4] + [0.0] * 44, [0.9] + [0.0] * 44, [2.1] + [0.0] * 44])
    assert termination.humanoid(humanoid).tolist() == [False, True, True]
    pend = _obs([[0.0, 0.1, 0.0, 0.0], [0.0, 0.3, 0.0, 0.0], [0.0, -0.21, 0.0, 0.0]])
    assert termination.inverted_pendulum(pend).tolist() == [False, True, True]
    upright = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    fallen = [0.0, np.sin(0.8), 0.0, np.cos(0.8), 1.0, 0.0, 0.0, 0.0, 0.0]
    assert termination.inverted_double_pendulum(_obs([upright, fallen])).tolist() == [False, True]
    assert termination.never(hop).tolist() == [False] * 5


@pytest.mark.parametrize(
    ("env_id", "kwargs", "name"),
    [
        ("Hopper-v5", {}, "hopper"),
        ("Walker2d-v5", {}, "walker2d"),
        ("Ant-v5", {"include_cfrc_ext_in_observation": False}, "ant"),
        ("Humanoid-v5", {"include_cinert_in_observation": False, "include_cvel_in_observation": False,
                         "include_qfrc_actuator_in_observation": False, "include_cfrc_ext_in_observation": False},
         "humanoid"),
        ("InvertedPendulum-v5", {}, "inverted_pendulum"),
        ("InvertedDoublePendulum-v5", {}, "inverted_double_pendulum"),
        ("HalfCheetah-v5", {}, "halfcheetah"),
    ],
)
def test_termination_matches_environment(env_id: str, kwargs: dict, name: str) -> None:
    """On random-action trajectories the function agrees with gymnasium's own `terminated`."""
    env = gym.make(env_id, **kwargs)
    fn = termination.termination_fn("auto", env_id)
    assert termination.termination_name("auto", env_id) == name
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    ours, theirs = [], []
    for _ in range(600):
        obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        ours.append(bool(fn(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]))
        theirs.append(terminated)
        if terminated or truncated:
            env.reset()
    env.close()
    assert ours == theirs
    if name not in ("halfcheetah",):
        assert any(theirs), "the trajectory should include terminations"


def _batch(start: int, n: int) -> Batch:
    v = torch.arange(start, start + n, dtype=torch.float32)
    return Batch(v[:, None].repeat(1, 3), v[:, None], v, v[:, None].repeat(1, 3) + 1, torch.zeros(n))


def test_buffer_wraps_around_and_keeps_newest() -> None:
    buf = ReplayBuffer(5, 3, 1, torch.device("cpu"))
    buf.add(_batch(0, 3))
    assert len(buf) == 3
    buf.add(_batch(3, 4))  # 7 added into capacity 5: 2..6 remain
    assert len(buf) == 5 and buf.ptr == 2
    assert buf.ordered().reward.tolist() == [2, 3, 4, 5, 6]
    buf.add(_batch(10, 12))  # larger than capacity: the last 5 are kept
    assert buf.ordered().reward.tolist() == [17, 18, 19, 20, 21]
    grown = buf.resized(8)
    assert grown.ordered().reward.tolist() == [17, 18, 19, 20, 21]
    shrunk = buf.resized(2)
    assert shrunk.ordered().reward.tolist() == [20, 21]
    gen = torch.Generator().manual_seed(0)
    sample = buf.sample(100, gen)
    assert set(sample.reward.tolist()) <= {17.0, 18.0, 19.0, 20.0, 21.0}


def test_buffer_state_roundtrip() -> None:
    buf = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    buf.add(_batch(0, 6))
    other = ReplayBuffer(4, 3, 1, torch.device("cpu"))
    other.load_state_dict(buf.state_dict())
    assert other.ordered().reward.tolist() == buf.ordered().reward.tolist()


def test_mixed_batch_ratio() -> None:
    real = ReplayBuffer(100, 3, 1, torch.device("cpu"))
    real.add(_batch(0, 50))
    model = ReplayBuffer(100, 3, 1, torch.device("cpu"))
    model.add(_batch(1000, 50))
    gen = torch.Generator().manual_seed(0)
    batch = mixed_batch(real, model, 4, 256, 0.05, gen)
    assert batch.obs.shape == (4, 256, 3)
    assert int((batch.reward < 1000).sum(dim=1)[0]) == 12  # int(256 * 0.05) real rows
    empty = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    assert bool((mixed_batch(real, empty, 2, 8, 0.05, gen).reward < 1000).all())


TINY = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 3},
    "rollout": {"batch_size": 200, "schedule": [1, 15, 1, 1], "train_freq": 50},
    "sac": {"updates_per_step": 2, "hidden": 32, "batch_size": 32},
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
    seen, _ = _metrics({**TINY, "algo": "sac"})
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
    assert state.update_mode is None  # still exploring: nothing captured yet
    train(state, events.append)
    assert state.update_mode == ("SAC updates: eager (CUDA graphs need a CUDA device); "
                                 "model training: eager (CUDA graphs need a CUDA device)")
    assert not any(isinstance(e, NoticeEvent) for e in events)
    off = build_run(build_config({**config, "train": {**config["train"], "cuda_graphs": False}}))
    train(off)
    assert off.update_mode == "SAC updates and model training: eager (train.cuda_graphs is off)"
