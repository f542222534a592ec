"""A task with a Dict observation (issue 28, item 1), as gymnasium-robotics' goal tasks have: `mbpo train` flattens
it and says so once on stderr, and `eval` and `export` take the observation flattened the same way (export's
signature says where each part lies), as does the Python API's `predict`."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from clihelpers import mbpo

from mbpo_cli import api

MODULE = "mbpo_test_dictenv_i28"
ENV_ID = "MbpoTestDictReach-v0"

TINY_ENV = f'''
"""A point that reaches for a goal drawn at reset, observed as a Dict of its position and the goal."""
import gymnasium as gym
import numpy as np


class DictReach(gym.Env):
    def __init__(self):
        box = gym.spaces.Box(-5.0, 5.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({{"position": box, "goal": box}})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position = np.zeros(2)
        self.goal = np.zeros(2)

    def _obs(self):
        return {{"position": self.position.astype(np.float32), "goal": self.goal.astype(np.float32)}}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, size=2)
        self.goal = self.np_random.uniform(-1.0, 1.0, size=2)
        return self._obs(), {{}}

    def step(self, action):
        self.position = np.clip(self.position + 0.1 * np.asarray(action, np.float64), -5.0, 5.0)
        return self._obs(), -float(np.linalg.norm(self.position - self.goal)), False, False, {{}}


gym.register("{ENV_ID}", entry_point=DictReach, max_episode_steps=25)
'''

SETS = ["train.init_steps=100", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
        "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32", "rollout.batch_size=200",
        "model.max_epochs=3", "model.hidden=32", "model.batch_size=32"]
NOTE = (f"env: {MODULE}:{ENV_ID}'s observation is flattened (gymnasium's FlattenObservation) to 4 values: "
        "goal [0:2], position [2:4]; eval and export take it flattened the same way")


def _forget_the_module() -> None:
    sys.modules.pop(MODULE, None)
    gym.registry.pop(ENV_ID, None)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding the task's module."""
    (tmp_path / f"{MODULE}.py").write_text(TINY_ENV)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    _forget_the_module()
    yield tmp_path
    _forget_the_module()


def test_a_dict_observation_task_trains_evaluates_and_exports_flattened(work: Path) -> None:
    runs_dir = work / "runs"
    result = mbpo(runs_dir, "train", "--env", f"{MODULE}:{ENV_ID}", "--steps", "200", "--device", "cpu", "--json",
                  *(arg for item in SETS for arg in ("--set", item)))
    assert result.exit_code == 0, result.output
    assert result.stderr.count(NOTE) == 1, result.stderr
    run = json.loads(result.stdout)
    assert (run["status"], run["env_steps"]) == ("finished", 200)

    evaluated = mbpo(runs_dir, "eval", run["id"], "--episodes", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["lengths"] == [25, 25]

    out = work / "policy.pt"
    exported = mbpo(runs_dir, "export", run["id"], "--format", "torchscript", "--out", str(out), "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["input"] == {
        "name": "obs", "shape": ["B", 4], "dtype": "float32",
        "flattened": [{"key": "goal", "start": 0, "stop": 2}, {"key": "position", "start": 2, "stop": 4}]}
    program = torch.jit.load(str(out))
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    flat = torch.as_tensor(gym.spaces.flatten(env.observation_space, obs)).unsqueeze(0)
    assert program(flat).shape == (1, 2)  # the file takes the observation flattened as gymnasium flattens it

    # the Python API's policy takes the task's own Dict observation (one or a list), flattening it as the run did
    policy = api.load_policy(run["id"], runs_dir)
    np.testing.assert_array_equal(policy.predict(obs), policy.predict(flat.numpy()[0]))
    second, _ = env.reset(seed=1)
    np.testing.assert_array_equal(policy.predict([obs, second]),
                                  np.stack([policy.predict(obs), policy.predict(second)]))

    shown = mbpo(runs_dir, "export", run["id"], "--format", "torchscript", "--out", str(out), "--overwrite")
    assert shown.exit_code == 0, shown.output
    assert ("input obs: B x 4 float32 (the task's observation flattened, gymnasium's FlattenObservation: "
            "goal [0:2], position [2:4]); output action: B x 2 float32") in " ".join(shown.stdout.split())
