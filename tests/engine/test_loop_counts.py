"""Algorithm 2's counts on a tiny run: G agent updates per real step after exploration, model retrains at
init_steps + n x train_freq each followed by its rollouts, an evaluation every epoch_length steps (and at the end).

The run's own phases are watched, not replaced: `train_model` and `rollout_model` are wrapped to record the env
step they run at, and the agent's `update` to count its calls; each still does its work. init_steps (120) is not a
multiple of train_freq (50) or epoch_length (100), so retrains counted from step 0 or evaluations counted from the
end of exploration would be caught.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from mbpo_cli.config.load import build_config
from mbpo_cli.engine import loop
from mbpo_cli.engine.events import EpochEvent
from mbpo_cli.engine.state import RunState, build_run

STEPS, INIT, FREQ, EPOCH, G = 270, 120, 50, 100, 3

CONFIG = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 2},
    "rollout": {"batch_size": 100, "schedule": [1, 15, 1, 1], "train_freq": FREQ},
    "agent": {"updates_per_step": G, "batch_size": 32},
    "sac": {"hidden": 32},
    "train": {"steps": STEPS, "epoch_length": EPOCH, "init_steps": INIT, "eval_episodes": 1, "seed": 5,
              "threads": 1},
    "diagnostics": {"enabled": False},
}


class Watched:
    """What happened during one run, in order: ("retrain" | "rollout", env step), and each agent update's step."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.updates: list[int] = []
        self.epochs: list[EpochEvent] = []


def _recording(name: str, phase: Callable[[RunState], Any], watched: Watched) -> Callable[[RunState], Any]:
    def wrapped(state: RunState) -> Any:
        watched.phases.append((name, state.env_step))
        return phase(state)

    return wrapped


def watch_run(config: dict, monkeypatch: pytest.MonkeyPatch) -> tuple[RunState, Watched]:
    watched = Watched()
    monkeypatch.setattr(loop, "train_model", _recording("retrain", loop.train_model, watched))
    monkeypatch.setattr(loop, "rollout_model", _recording("rollout", loop.rollout_model, watched))
    state = build_run(build_config(config))
    update = state.agent.update

    def counted_update(*args: Any) -> Any:
        watched.updates.append(state.env_step)
        return update(*args)

    state.agent.update = counted_update  # type: ignore[method-assign]
    loop.train(state, lambda e: watched.epochs.append(e) if isinstance(e, EpochEvent) else None)
    return state, watched


@pytest.fixture(scope="session")
def mbpo_run() -> tuple[RunState, Watched]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return watch_run(CONFIG, monkeypatch)


def test_agent_updates_are_g_per_real_step_after_exploration(mbpo_run: tuple[RunState, Watched]) -> None:
    state, watched = mbpo_run
    assert len(watched.updates) == G * (STEPS - INIT)
    assert Counter(watched.updates) == dict.fromkeys(range(INIT, STEPS), G)
    assert state.agent_updates == G * (STEPS - INIT)
    assert watched.epochs[-1].metrics["agent_updates"] == G * (STEPS - INIT)


def test_model_retrains_at_init_steps_plus_multiples_of_train_freq(mbpo_run: tuple[RunState, Watched]) -> None:
    _, watched = mbpo_run
    retrains = [step for name, step in watched.phases if name == "retrain"]
    assert retrains == list(range(INIT, STEPS, FREQ)) == [120, 170, 220]


def test_rollouts_follow_each_retrain(mbpo_run: tuple[RunState, Watched]) -> None:
    state, watched = mbpo_run
    expected = [(phase, step) for step in range(INIT, STEPS, FREQ) for phase in ("retrain", "rollout")]
    assert watched.phases == expected
    assert state.lone.model_buffer is not None and len(state.lone.model_buffer) > 0


def test_evaluations_every_epoch_length_and_at_the_end(mbpo_run: tuple[RunState, Watched]) -> None:
    _, watched = mbpo_run
    assert [e.env_step for e in watched.epochs] == [100, 200, 270]
    assert all("eval_return" in e.metrics for e in watched.epochs)


def test_the_base_agent_alone_updates_as_often_and_never_touches_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    state, watched = watch_run({**CONFIG, "algo": "model_free"}, monkeypatch)
    assert watched.phases == []
    assert state.model is None and state.lone.model_buffer is None
    assert Counter(watched.updates) == dict.fromkeys(range(INIT, STEPS), G)
    assert [e.env_step for e in watched.epochs] == [100, 200, 270]
