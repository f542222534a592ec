"""Learning tests on InvertedPendulum-v5 (CPU, seed 0): SAC learns, and MBPO beats SAC at equal real steps.

These are the suite's slow tests (a few minutes on 2 cores). The curves are deterministic for the seed.
"""

import itertools

import pytest

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.events import EpochEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import build_run

BUDGET = 3000
Curve = list[tuple[int, float]]


def run_curve(algo: str, overrides: list[str], stop_at_return: float | None = None) -> Curve:
    """Train with the inverted_pendulum preset and return the evaluation curve [(env step, return)]."""
    config = resolve_config(preset="inverted_pendulum", algo=algo, steps=BUDGET, seed=0,
                            overrides=["train.device=cpu", *overrides])
    state = build_run(config)
    curve: Curve = [(0, 0.0)]

    def record(event: object) -> None:
        if isinstance(event, EpochEvent):
            curve.append((event.env_step, event.metrics["eval_return"]))

    def reached() -> bool:
        return stop_at_return is not None and curve[-1][1] >= stop_at_return

    train(state, record, should_stop=reached)
    return curve


def area(curve: Curve) -> float:
    """Trapezoid area under the evaluation curve (returns are >= 0 on this task)."""
    return sum((s1 - s0) * (r0 + r1) / 2 for (s0, r0), (s1, r1) in itertools.pairwise(curve))


@pytest.fixture(scope="module")
def sac_curve() -> Curve:
    """Standard SAC (G = 1) on the full budget."""
    return run_curve("sac", [])


@pytest.mark.slow
@pytest.mark.xdist_group("inverted-pendulum-sac")
def test_sac_learns_inverted_pendulum(sac_curve: Curve) -> None:
    # A uniform-random policy scores about 20 here (the first evaluations, before any update, agree);
    # a learning agent holds the pole several times longer within the budget.
    first = sac_curve[1][1]
    assert first < 40
    assert max(r for _, r in sac_curve) >= 3 * first


@pytest.mark.slow
@pytest.mark.xdist_group("inverted-pendulum-sac")
def test_mbpo_beats_sac_at_equal_real_steps(sac_curve: Curve) -> None:
    # The paper's settings but with 10,000 instead of 100,000 branched rollouts per retrain: with k = 1 the
    # model buffer then holds 10,000 fresh model transitions, still far more than the real data, and every
    # SAC minibatch is still 95% model data, so the test exercises exactly MBPO's mechanism (model fitting,
    # branched rollouts, mixed minibatches, G = 10) at a fraction of the rollout cost.
    mbpo = run_curve("mbpo", ["rollout.batch_size=10000"], stop_at_return=900)
    reached_at, best = mbpo[-1]
    assert best >= 900 and reached_at <= BUDGET, mbpo
    # At equal real steps: SAC's curve over the same [0, reached_at] has less area, and SAC does not reach 900
    # within the whole budget.
    assert area(mbpo) > area([(s, r) for s, r in sac_curve if s <= reached_at]), (mbpo, sac_curve)
    assert max(r for _, r in sac_curve) < 900, sac_curve
