"""Learning tests on InvertedPendulum-v5 (CPU, seed 0): SAC learns, and MBPO beats SAC at equal real steps.

These are the suite's slow tests (a few minutes on 2 cores). The curves are deterministic for the seed.
"""

import pytest

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.events import EpochEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import build_run

BUDGET = 3000
SHARED = ["agent.batch_size=128"]
"""Both agents' minibatches hold 128 transitions, not the paper's 256: the SAC update dominates these tests' time and
is arithmetic-bound at these shapes, so this halves the suite's longest test; MBPO and SAC share it."""
Curve = list[tuple[int, float]]


def run_curve(algo: str, overrides: list[str], stop_at_return: float | None = None) -> Curve:
    """Train with the inverted_pendulum preset and return the evaluation curve [(env step, return)]."""
    config = resolve_config(preset="inverted_pendulum", algo=algo, steps=BUDGET, seed=0,
                            overrides=["train.device=cpu", *SHARED, *overrides])
    state = build_run(config)
    curve: Curve = [(0, 0.0)]

    def record(event: object) -> None:
        if isinstance(event, EpochEvent):
            curve.append((event.env_step, event.metrics["eval_return"]))

    def reached() -> bool:
        return stop_at_return is not None and curve[-1][1] >= stop_at_return

    train(state, record, should_stop=reached)
    return curve


MBPO_REACHES = 900
"""The return MBPO must reach, and standard SAC must not, at equal real steps."""
REACHED_BY = 2500
"""MBPO reaches `MBPO_REACHES` by this env step (2,250 with torch 2.13.0 on CPU, seed 0, minibatches of 128; with the
paper's 256, 1,750-2,250)."""


@pytest.mark.slow
def test_sac_learns_inverted_pendulum_but_not_to_900_in_3000_steps() -> None:
    # A uniform-random policy scores about 20 here (the first evaluations, before any update, agree);
    # a learning agent holds the pole several times longer within the budget, but standard SAC (G = 1) does not
    # reach MBPO's return within the whole budget: the baseline half of "MBPO beats SAC at equal real steps".
    sac_curve = run_curve("sac", [])
    first = sac_curve[1][1]
    assert first < 40
    assert max(r for _, r in sac_curve) >= 3 * first
    assert sac_curve[-1][0] == BUDGET and max(r for _, r in sac_curve) < MBPO_REACHES, sac_curve


@pytest.mark.slow
def test_mbpo_reaches_in_fewer_real_steps_a_return_sac_does_not_reach() -> None:
    # The paper's settings but with minibatches of 128 (both agents, `SHARED`) and 10,000 instead of 100,000
    # branched rollouts per retrain: with k = 1 the model buffer then holds 10,000 fresh model transitions, still far
    # more than the real data, and every SAC minibatch is still 95% model data, so the test exercises exactly MBPO's
    # mechanism (model fitting, branched rollouts, mixed minibatches, G = 10) at a fraction of the rollout cost.
    # With the test above: at equal real steps MBPO reaches a return (900) that SAC does not reach in the whole
    # budget, in at most 5/6 of it. The two run apart (in parallel under pytest-xdist): this is the longest test.
    mbpo = run_curve("mbpo", ["rollout.batch_size=10000"], stop_at_return=MBPO_REACHES)
    reached_at, best = mbpo[-1]
    assert best >= MBPO_REACHES and reached_at <= REACHED_BY, mbpo
