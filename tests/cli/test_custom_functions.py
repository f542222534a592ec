"""Custom termination and reward functions (`env.termination` / `env.reward: module:function`) during training: what
they print stays off the JSON on stdout.

Training runs here are tiny (tests/clihelpers.py TINY: 300 env steps, the first model rollout at env step 200).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clihelpers import TINY, mbpo

USER_MODULE = '''
import os

def printing(next_obs):
    print("print from a termination function")
    os.write(1, b"fd 1 from a termination function\\n")  # as C code or a child process writes
    return next_obs[:, 1].abs() > 0.2
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
