"""Custom termination and reward functions (`env.termination` / `env.reward: module:function`) during training: what
they print stays off the JSON on stdout, and one that passes the check at start but misbehaves later fails the run
with an error that names it, what it returned and the env step.

Training runs here are tiny (tests/clihelpers.py TINY: 300 env steps, the first model rollout at env step 200).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clihelpers import TINY, mbpo, one_error_line

from mbpo_cli.models.termination.custom import CustomFunctionError, CustomReward, CustomTermination
from mbpo_cli.runs.registry import Registry

USER_MODULE = '''
import os

import torch

CALLS = {"count": 0}


def _later():
    """True from the second call on: the first is the check at start."""
    CALLS["count"] += 1
    return CALLS["count"] > 1


def printing(next_obs):
    print("print from a termination function")
    os.write(1, b"fd 1 from a termination function\\n")  # as C code or a child process writes
    return next_obs[:, 1].abs() > 0.2


def late_meta(next_obs):
    done = next_obs[:, 1].abs() > 0.2
    return done.to("meta") if _later() else done


def late_int64(next_obs):
    done = next_obs[:, 1].abs() > 0.2
    return done.long() if _later() else done


def late_nan(obs, act, next_obs):
    reward = torch.ones(obs.shape[0])
    return reward * float("nan") if _later() else reward
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The user's module in `tmp_path` (the working directory), under a name unique to the test."""
    name = f"user_fns_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _console_script() -> str:
    found = shutil.which("mbpo") or str(Path(sys.executable).parent / "mbpo")
    assert Path(found).exists(), "the mbpo console script is not installed"
    return found


def test_a_custom_function_that_prints_leaves_stdout_to_the_json(tmp_path: Path, user_module: str) -> None:
    """`train --json` in a real process: what the function prints, through Python or straight to file descriptor 1,
    goes to stderr; stdout holds the one JSON object. `runs metrics --csv --json` still prints its CSV."""
    runs_dir = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k not in ("MBPO_REGISTRY_URL", "MBPO_RUNS_DIR")}
    proc = subprocess.run([_console_script(), "--runs-dir", str(runs_dir), "train", *TINY, "--set",
                           f"env.termination={user_module}:printing", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.endswith("}\n"), proc.stdout[:500]
    summary = json.loads(proc.stdout)
    assert summary["status"] == "finished" and summary["env_steps"] == 300
    assert "print from a termination function" in proc.stderr
    assert "fd 1 from a termination function" in proc.stderr
    metrics = mbpo(runs_dir, "runs", "metrics", summary["id"], "--keys", "eval_return", "--csv", "--json")
    assert metrics.exit_code == 0, metrics.output
    assert metrics.stdout.splitlines()[0] == "step,key,value"


def test_in_process_json_keeps_printed_text_off_stdout(tmp_path: Path, user_module: str) -> None:
    """The same where stdout is not a file (an in-process capture): sys.stdout alone is redirected."""
    result = mbpo(tmp_path / "runs", "train", *TINY, "--set", f"env.termination={user_module}:printing", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "finished"
    assert "print from a termination function" in result.stderr


@pytest.mark.parametrize(("key", "function", "returned"), [
    ("termination", "late_meta", "returned a torch.bool tensor of shape (500,) on meta instead of a bool tensor of "
                                 "shape (500,) on cpu"),
    ("termination", "late_int64", "returned a torch.int64 tensor of shape (500,) on cpu instead of a bool tensor of "
                                  "shape (500,) on cpu"),
    ("reward", "late_nan", "returned non-finite rewards (500 NaN, 0 infinite) for finite observations and actions"),
])
def test_a_custom_function_that_misbehaves_mid_run_is_named(tmp_path: Path, user_module: str, key: str,
                                                            function: str, returned: str) -> None:
    """It passes the check at start and misbehaves at the first model rollout (env step 200, 500 branches): one
    line naming the function, what it returned and the env step, exit 2, the run failed with that message (a NaN
    reward is the function's fault, not the model's)."""
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", *TINY, "--set", f"env.{key}={user_module}:{function}", "--json")
    line = one_error_line(result, 2)
    message = f"env.{key}: {user_module}:{function} {returned} (it passed the check at start), at env step 200"
    assert line == f"error: {message}"
    with Registry.open(runs_dir) as registry:
        [run] = registry.list_runs()
    assert run.status == "failed"
    assert run.error == f"CustomFunctionError: {message}"


def test_a_nan_reward_from_non_finite_model_states_is_left_to_the_model() -> None:
    """Only rows whose inputs are all finite count against the function: a NaN computed from a NaN state the model
    predicted is the model's to answer for (its own check names it)."""
    reward = CustomReward(lambda obs, act, next_obs: -next_obs.pow(2).sum(dim=-1), "m:f")
    obs, act = torch.zeros(3, 2), torch.zeros(3, 1)
    reward(obs, act, torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [2.0, 0.0]]))
    reward.check_finite()  # one NaN, from a NaN input: not the function's
    reward(obs, act, torch.tensor([[0.0, 1.0], [float("inf"), 0.0], [2.0, 0.0]]))
    reward(obs, act, torch.tensor([[1e20, 1e20], [0.0, 0.0], [2.0, 0.0]]))  # finite inputs, an infinite reward
    with pytest.raises(CustomFunctionError, match=r"^env.reward: m:f returned non-finite rewards \(0 NaN, 1 "):
        reward.check_finite()
    reward.check_finite()  # the counts started again


def test_a_result_that_is_not_a_tensor_is_named_without_an_env_step() -> None:
    """Outside the training loop (as in `mbpo bench`) the message has no env step."""
    done = CustomTermination(lambda next_obs: [False] * next_obs.shape[0], "m:done")
    with pytest.raises(CustomFunctionError) as error:
        done(torch.zeros(4, 2))
    assert str(error.value) == ("env.termination: m:done returned a list instead of a bool tensor of shape (4,) on "
                                "cpu (it passed the check at start)")
