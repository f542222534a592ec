"""`--env module:EnvId` with `module.py` in the working directory (issue 27, finding 14): the module is imported
(from the working directory, as custom functions are), registers the task, and every command that makes the
environment finds it, `eval` in a later process included."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from clihelpers import mbpo, one_error_line

MODULE = "mbpo_test_tinyenv_i27"
ENV_ID = "MbpoTestTinyPoint-v0"

TINY_ENV = f'''
"""A point on a line, pushed toward the origin: a task of a few lines, registered on import."""
import gymnasium as gym
import numpy as np


class TinyPoint(gym.Env):
    def __init__(self):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.state = np.zeros(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1.0, 1.0, size=1)
        return self.state.astype(np.float32), {{}}

    def step(self, action):
        self.state = np.clip(self.state + 0.1 * np.asarray(action, np.float64), -10.0, 10.0)
        return self.state.astype(np.float32), float(-abs(self.state[0])), False, False, {{}}


gym.register("{ENV_ID}", entry_point=TinyPoint, max_episode_steps=20)
'''

SETS = ["train.init_steps=100", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
        "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32", "rollout.batch_size=200",
        "model.max_epochs=3", "model.hidden=32", "model.batch_size=32"]


def _forget_the_module() -> None:
    """What a new process starts without: the module imported and the task it registered."""
    sys.modules.pop(MODULE, None)
    gym.registry.pop(ENV_ID, None)


@pytest.fixture
def in_a_folder_with_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding the task's module, not importable until a command makes it so."""
    work = tmp_path / "work"
    work.mkdir()
    (work / f"{MODULE}.py").write_text(TINY_ENV)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(work))])
    _forget_the_module()
    yield work
    _forget_the_module()


def test_a_task_registered_by_a_module_in_the_working_directory_trains_and_evaluates(
        in_a_folder_with_the_module: Path) -> None:
    runs_dir = in_a_folder_with_the_module / "runs"
    result = mbpo(runs_dir, "train", "--env", f"{MODULE}:{ENV_ID}", "--steps", "300", "--device", "cpu", "--json",
                  *(arg for item in SETS for arg in ("--set", item)))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["env"], summary["status"], summary["env_steps"]) == (f"{MODULE}:{ENV_ID}", "finished", 300)

    _forget_the_module()
    sys.path.remove(str(Path.cwd()))
    evaluated = mbpo(runs_dir, "eval", summary["id"], "--episodes", "2", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["lengths"] == [20, 20]


def test_a_module_that_is_not_there_is_named_in_one_line(in_a_folder_with_the_module: Path) -> None:
    result = mbpo(in_a_folder_with_the_module / "runs", "train", "--env", f"no_such_module_i27:{ENV_ID}")
    assert one_error_line(result) == (f"error: environment 'no_such_module_i27:{ENV_ID}': cannot import "
                                      "'no_such_module_i27' (from the working directory or the installed packages): "
                                      "ModuleNotFoundError: No module named 'no_such_module_i27'")


def test_an_id_with_two_colons_is_one_line(in_a_folder_with_the_module: Path) -> None:
    result = mbpo(in_a_folder_with_the_module / "runs", "train", "--env", "a:b:c")
    assert one_error_line(result) == "error: environment 'a:b:c': expected ENV_ID or module:ENV_ID (one colon)"
