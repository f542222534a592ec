"""Each base agent learns a small task on the CPU (seed 0, one thread; the curves are deterministic).

Thresholds and why:
- InvertedPendulum-v5 (TD3, DDPG; alone at G = 1 and inside MBPO): an evaluation return of at least 50
  within 1,000 real steps. The untrained deterministic actor scores 5 (its constant action drops the pole at
  once) and a uniform-random policy about 20; 50 means the policy holds the pole 10x longer than before
  learning and 2.5x longer than chance. Both agents pass it by 750-1,000 steps (TD3 61.6 and DDPG 60.6 at
  1,000 alone; 61.0 and 62.8 at 750 inside MBPO), while 1,000 steps keep the MBPO runs under a minute each.
- CartPole-v1 (DQN alone at G = 1): an evaluation return of at least 150 within 3,000 steps, against about
  9-22 for the untrained greedy policy; seeds 0-2 pass 160 by 1,750 steps.
- CartPole-v1 (MBPO + DQN, the `cartpole` preset): the issue's bar, a mean of at least 195 over 20 evaluation
  episodes within the preset's 5,000 real steps.
Each run stops at its first evaluation past the bar.
"""

import pytest

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.events import EpochEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import build_run

Curve = list[tuple[int, float]]


def curve_until(threshold: float, preset: str, steps: int, algo: str | None, *overrides: str) -> Curve:
    """Train from `preset` until an evaluation reaches `threshold` (or `steps`); the evaluation curve."""
    config = resolve_config(preset=preset, algo=algo, steps=steps, seed=0,
                            overrides=["train.device=cpu", "train.threads=1", *overrides])
    state = build_run(config)
    curve: Curve = []

    def record(event: object) -> None:
        if isinstance(event, EpochEvent):
            curve.append((event.env_step, event.metrics["eval_return"]))

    train(state, record, should_stop=lambda: bool(curve) and curve[-1][1] >= threshold)
    return curve


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "agent"), [("model-free", "td3"), ("model-free", "ddpg"), ("mbpo", "td3")])
def test_deterministic_actor_critics_learn_inverted_pendulum(agent: str, algo: str) -> None:
    # Each agent alone, and TD3 inside MBPO. DDPG inside MBPO runs the same code path (TD3 less its target noise and
    # delay) and passed this bar at 750 steps (62.8) when it was a case here; it still trains inside MBPO in
    # tests/runs/test_resume.py (exact resume). Its 45 s are spared from the suite.
    inside_mbpo = ["rollout.batch_size=5000", "agent.updates_per_step=5"] if algo == "mbpo" else []
    curve = curve_until(50.0, "inverted_pendulum", 1000, algo, f"agent.name={agent}", *inside_mbpo)
    assert curve[0][1] < 10, curve  # the untrained actor, before any update
    assert curve[-1][1] >= 50.0, curve


@pytest.mark.slow
def test_dqn_learns_cartpole() -> None:
    curve = curve_until(150.0, "cartpole", 3000, "model-free")
    assert curve[0][1] < 30, curve
    assert curve[-1][1] >= 150.0, curve


@pytest.mark.slow
def test_mbpo_with_dqn_balances_cartpole_within_5000_steps() -> None:
    curve = curve_until(195.0, "cartpole", 5000, None, "train.eval_episodes=20")
    assert curve[-1][1] >= 195.0 and curve[-1][0] <= 5000, curve
