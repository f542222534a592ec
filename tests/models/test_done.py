"""The learned termination classifier on real CartPole and Hopper transitions.

Random-action episodes give plenty of terminal transitions on both tasks (CartPole falls within ~20 steps,
Hopper within ~50). The classifier is trained on one set of episodes and judged on episodes of other seeds:
it must find at least 90% of their terminal transitions (recall; a missed termination lets a model rollout
run on through a state the real task ends in, the costly error) and be right on at least 95% of all
transitions. Both bounds hold with a wide margin on these tasks, whose terminations are simple functions of
the next observation (CartPole: |x| > 2.4 or |angle| > 12 degrees; Hopper: height, angle and finiteness).
"""

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli.config.schema import DoneModelConfig
from mbpo_cli.models.termination.learned import (
    DoneClassifier,
    fbeta_threshold,
    fit_done_classifier,
    holdout_rates,
    holdout_threshold,
    make_done_optimizer,
)

RECALL, ACCURACY = 0.9, 0.95


def transitions(env_id: str, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next observations `N x D` and termination flags `N` of random-action episodes."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    next_obs, done = [], []
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        next_obs.append(np.asarray(obs, dtype=np.float32))
        done.append(float(terminated))
        if terminated or truncated:
            env.reset()
    env.close()
    return torch.as_tensor(np.stack(next_obs)), torch.tensor(done)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5"])
def test_learned_termination_finds_held_out_terminal_transitions(env_id: str) -> None:
    torch.manual_seed(0)
    x, y = transitions(env_id, 4000, seed=0)
    model = DoneClassifier(x.shape[1], DoneModelConfig())
    fit = fit_done_classifier(model, make_done_optimizer(model), x[None], y[None],
                              [torch.Generator().manual_seed(0)])[0]
    assert fit.terminal == int(y.sum()) > 50 and fit.epochs > 0
    assert fit.holdout_recall >= RECALL and fit.holdout_accuracy >= ACCURACY, fit
    test_x, test_y = transitions(env_id, 2000, seed=1)
    predicted = model(test_x[None])[0]
    actual = test_y > 0.5
    assert float(predicted[actual].float().mean()) >= RECALL
    assert float((predicted == actual).float().mean()) >= ACCURACY


def test_before_any_termination_nothing_terminates_but_non_finite_states() -> None:
    model = DoneClassifier(4, DoneModelConfig())
    x = torch.randn(100, 4)
    fit = fit_done_classifier(model, make_done_optimizer(model), x[None], torch.zeros(1, 100), [torch.Generator()])[0]
    assert fit.terminal == 0 and fit.epochs == 0 and np.isnan(fit.holdout_recall)
    x[3, 1] = float("nan")
    assert model(x[None])[0].nonzero().flatten().tolist() == [3]


# ---------------------------------------------------------------------------------------------
# The threshold chosen on the holdout, its false-positive rate, and the threshold in checkpoints
# ---------------------------------------------------------------------------------------------


def test_the_chosen_threshold_flags_fewer_false_terminations_than_one_half() -> None:
    """By hand: 3 terminal transitions among 23, ranked by logit 2.0 T, 1.0 T, 0.6 F, 0.5 T, 0.4 F, 0.2 F, then 17 F
    at -3. F2 = 5 TP / (5 TP + 4 FN + FP) flagging the top 1, 2, 3, 4, 5, 6: 5/13, 10/14, 10/15, 15/16, 15/17, 15/18
    (all 23: 15/35). The best flags 4, a cut midway between 0.5 and 0.4: one false termination (0.6), where the
    0.5 cut (logit 0) flags six with three false ones. Recall stays 3 of 3."""
    logits = torch.tensor([2.0, 1.0, 0.6, 0.5, 0.4, 0.2] + [-3.0] * 17)
    actual = torch.tensor([True, True, False, True, False, False] + [False] * 17)
    cut = fbeta_threshold(logits, actual)
    assert cut == pytest.approx(0.45)
    assert int((logits > cut)[~actual].sum()) == 1 < int((logits > 0.0)[~actual].sum()) == 3
    assert bool((logits > cut)[actual].all())
    assert fbeta_threshold(logits, torch.zeros(23, dtype=torch.bool)) == 0.0  # no terminal transition: 0.5


def test_a_small_or_weak_holdout_never_lowers_the_threshold_below_one_half() -> None:
    """By hand: 12 terminal transitions ranked below all 28 others (logits -1..-12 against 1..28). A cut flagging
    k >= 29 finds k - 28 of them with 28 false: F2 = 5 TP / (5 TP + 4 FN + 28), best at k = 40 (60/88 against 55/87
    at 39), a cut under every logit; kept: 0.5 (logit 0). Nine terminal transitions ranked on top would give a cut
    above 0.5, but nine are too few to choose from: 0.5."""
    weak = torch.cat([torch.arange(1.0, 29.0), -torch.arange(1.0, 13.0)])
    terminal = torch.cat([torch.zeros(28, dtype=torch.bool), torch.ones(12, dtype=torch.bool)])
    assert fbeta_threshold(weak, terminal) == pytest.approx(-13.0)
    assert holdout_threshold(weak, terminal) == 0.0
    few = torch.cat([torch.full((9,), 5.0), torch.full((31,), 1.0)])
    assert fbeta_threshold(few, few > 2.0) == pytest.approx(3.0)
    assert holdout_threshold(few, few > 2.0) == 0.0
    assert holdout_threshold(torch.cat([torch.full((10,), 5.0), torch.full((30,), 1.0)]),
                             torch.arange(40) < 10) == pytest.approx(3.0)


def test_a_classifier_fitted_on_imbalanced_data_keeps_fewer_false_terminations() -> None:
    """Non-terminal x ~ N(0, 1) (2,000), terminal x ~ N(3, 1) (100). A class-weighted fit puts its 0.5 cut near the
    midpoint x = 1.5: 6.7% of the non-terminal states flagged (134 of 2,000, P(N(0, 1) > 1.5)) to find 93% of the
    terminal ones. F2 over cuts x = c, 5 TP / (5 TP + 4 FN + FP), is about 0.74 at c = 1.5 (93 found, 134 false)
    and 0.79 at c = 2 (84 found, 2.3%: 45 false): the chosen cut sits higher. The same weights (the threshold does
    not change training), judged on fresh samples: well under half the false terminations (here 37 against 182),
    most terminations still found (83% against 94%)."""
    def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.cat([torch.randn(2000, 1, generator=g), 3.0 + torch.randn(100, 1, generator=g)])
        return x, torch.cat([torch.zeros(2000), torch.ones(100)])

    x, y = data(0)
    test_x, test_y = data(1)
    false_terminations, found = {}, {}
    for threshold in (0.5, None):
        torch.manual_seed(0)
        model = DoneClassifier(1, DoneModelConfig(hidden=16, max_epochs=30, threshold=threshold))
        fit = fit_done_classifier(model, make_done_optimizer(model), x[None], y[None],
                                  [torch.Generator().manual_seed(0)])[0]
        predicted = model(test_x[None])[0]
        false_terminations[threshold] = int(predicted[test_y == 0].sum())
        found[threshold] = float(predicted[test_y == 1].float().mean())
        assert fit.holdout_fpr == pytest.approx(false_terminations[threshold] / 2000, abs=0.03)
    assert fit.threshold > 0.5
    assert false_terminations[None] < false_terminations[0.5] / 2
    assert found[None] >= 0.7


def test_false_positive_rate_by_hand() -> None:
    """10 transitions, 3 terminal: predicted T T F F T F F F F F against T F F F T T F F F F: 1 false positive of 7
    non-terminal (1/7), 2 of 3 terminal found, 8 of 10 right."""
    predicted = torch.tensor([True, True, False, False, True, False, False, False, False, False])
    actual = torch.tensor([True, False, False, False, True, True, False, False, False, False])
    assert holdout_rates(predicted, actual) == pytest.approx((0.8, 2 / 3, 1 / 7))
    accuracy, recall, fpr = holdout_rates(predicted[~actual], actual[~actual])
    assert accuracy == pytest.approx(6 / 7)
    assert np.isnan(recall) and fpr == pytest.approx(1 / 7)


def test_the_threshold_travels_in_the_state_and_old_states_load_with_one_half(tmp_path: Path) -> None:
    """The chosen threshold is a buffer: saved and loaded with the weights (a checkpoint holds `state_dict()`). A state
    saved before it existed loads with the 0.5 cut (logit 0) it was used with."""
    model = DoneClassifier(4, DoneModelConfig())
    model.trained.fill_(True)
    model.threshold_logit.fill_(1.7)
    torch.save({"done_model": model.state_dict()}, tmp_path / "step.pt")
    saved = torch.load(tmp_path / "step.pt", weights_only=True)["done_model"]
    restored = DoneClassifier(4, DoneModelConfig())
    restored.load_state_dict(saved)
    assert float(restored.threshold_logit) == pytest.approx(1.7)
    x = torch.randn(1, 50, 4)
    assert torch.equal(restored(x), model(x))
    old = {k: v for k, v in saved.items() if k != "threshold_logit"}
    restored.load_state_dict(old)
    assert float(restored.threshold_logit) == 0.0
    assert torch.equal(restored(x), restored.logits(x) > 0.0)
    fixed = DoneClassifier(4, DoneModelConfig(threshold=0.2))  # a config that fixes it (old runs': 0.5)
    assert float(fixed.threshold_logit) == pytest.approx(math.log(0.25))
    fixed.threshold_logit.fill_(3.0)
    fixed.load_state_dict(old)
    assert float(fixed.threshold_logit) == pytest.approx(math.log(0.25))
