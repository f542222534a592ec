"""The learned termination classifier on real CartPole and Hopper transitions.

Random-action episodes give plenty of terminal transitions on both tasks (CartPole falls within ~20 steps,
Hopper within ~50). The classifier is trained on one set of episodes and judged on episodes of other seeds:
it must find at least 90% of their terminal transitions (recall; a missed termination lets a model rollout
run on through a state the real task ends in, the costly error) and be right on at least 95% of all
transitions. Both bounds hold with a wide margin on these tasks, whose terminations are simple functions of
the next observation (CartPole: |x| > 2.4 or |angle| > 12 degrees; Hopper: height, angle and finiteness).
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli.config.schema import DoneModelConfig
from mbpo_cli.models.done import DoneClassifier, fit_done_classifier, make_done_optimizer

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
    fit = fit_done_classifier(model, make_done_optimizer(model), x, y, torch.Generator().manual_seed(0))
    assert fit.terminal == int(y.sum()) > 50 and fit.epochs > 0
    assert fit.holdout_recall >= RECALL and fit.holdout_accuracy >= ACCURACY, fit
    test_x, test_y = transitions(env_id, 2000, seed=1)
    predicted = model(test_x)
    actual = test_y > 0.5
    assert float(predicted[actual].float().mean()) >= RECALL
    assert float((predicted == actual).float().mean()) >= ACCURACY


def test_before_any_termination_nothing_terminates_but_non_finite_states() -> None:
    model = DoneClassifier(4, DoneModelConfig())
    x = torch.randn(100, 4)
    fit = fit_done_classifier(model, make_done_optimizer(model), x, torch.zeros(100), torch.Generator())
    assert fit.terminal == 0 and fit.epochs == 0 and np.isnan(fit.holdout_recall)
    x[3, 1] = float("nan")
    assert model(x).nonzero().flatten().tolist() == [3]
