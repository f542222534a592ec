"""The defaults of `--env ENV_ID`: a gymnasium task without a preset, configured from a few facts about it and the
run's budget of steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskFacts:
    """What the defaults of a task without a preset depend on (measured on the environment when a run starts)."""

    obs_dim: int
    act_dim: int
    """Action dimensions (the number of choices for a discrete task)."""
    discrete: bool
    """A Discrete action space."""
    termination: str
    """The default `env.termination`: known, learned or never."""


ENV_STEPS = 100_000
"""`train.steps` of `--env ENV_ID` without `--steps`."""
PAPER_INIT_STEPS = 5000
"""The paper's random exploration steps: the most `--env ENV_ID` explores (a tenth of `train.steps` below 50,000)."""
PAPER_EPOCH_LENGTH = 1000
"""The paper's epoch: the longest of `--env ENV_ID` (a twentieth of `train.steps` below 20,000)."""


def env_defaults(env_id: str, facts: TaskFacts, steps: int = ENV_STEPS) -> dict[str, Any]:
    """Defaults for a gymnasium task without a preset, chosen from its facts and the budget `steps`.

    The paper's locomotion settings (G = 20, 1000-step epochs, 5,000 random steps), a wider model
    for large observations (as for Humanoid), DQN for discrete actions, and the usual SAC entropy target -|A|.
    Exploration and epochs scale down with a small budget, so that the agent trains for most of it and is evaluated
    at least 20 times: `init_steps` is a tenth of `steps` (at least 1, at most 5,000) rounded down to whole epochs,
    `epoch_length` a twentieth (at most 1,000). `--steps 5000` explores for 500 steps in epochs of 250, as the small
    presets do; from 50,000 steps on, the paper's values. DHMBPO's iterations are the epochs (it explores for whole
    iterations).
    """
    epoch_length = max(1, min(PAPER_EPOCH_LENGTH, steps // 20))
    init_steps = max(1, min(PAPER_INIT_STEPS, steps // 10))
    init_steps = max(epoch_length, init_steps - init_steps % epoch_length)
    data: dict[str, Any] = {
        "env": {"id": env_id, "termination": facts.termination},
        "agent": {"name": "dqn" if facts.discrete else "sac"},
        "model": {"hidden": 200 if facts.obs_dim < 40 else 400},
        "rollout": {"schedule": [20, 100, 1, 1]},
        "train": {"steps": steps, "init_steps": init_steps, "epoch_length": epoch_length},
        "dhmbpo": {"iteration_steps": epoch_length},
    }
    if not facts.discrete:
        data["sac"] = {"target_entropy": -float(facts.act_dim)}
    return data
