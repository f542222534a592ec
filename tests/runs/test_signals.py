"""Stop signals: the first asks for a clean stop after the current step; a second one stops a run stuck inside a
step (a custom function that hangs) at once, marked interrupted with its last checkpoint kept; a repeat says what
the process is doing rather than claiming a save that is not happening."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbpo_cli.runs.layout import checkpoint_file
from mbpo_cli.runs.process import ForcedStop, StopSignals
from mbpo_cli.runs.registry import Registry

MBPO = str(Path(sys.executable).with_name("mbpo"))
HANGING_MODULE = '''
import time
from pathlib import Path


def done(next_obs):
    """InvertedPendulum's termination, which hangs for good once a file named `hang` exists."""
    if Path("hang").exists():
        Path("hanging").touch()
        while True:
            time.sleep(0.05)
    return next_obs[:, 1].abs() > 0.2
'''
SETS = ["train.init_steps=100", "train.epoch_length=50", "train.eval_episodes=1", "train.threads=1",
        "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32", "model.hidden=32", "model.ensemble_size=3",
        "model.elites=2", "model.max_epochs=3", "rollout.batch_size=200", "rollout.train_freq=50",
        "env.termination=hanging_fns:done"]
TRAIN = ["train", "--preset", "inverted_pendulum", "--steps", "600", "--device", "cpu",
         *(arg for item in SETS for arg in ("--set", item))]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MBPO_REGISTRY_URL", None)
    return env


def _send_twice(signals: StopSignals) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # the handler runs in the main thread between two bytecodes
    assert signals.signum == signal.SIGINT
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)


def test_a_repeat_during_a_save_says_so_and_does_not_stop(capfd: pytest.CaptureFixture[str]) -> None:
    with StopSignals() as signals, signals.forceable(), signals.busy_with("a checkpoint is being saved"):
        _send_twice(signals)
    assert capfd.readouterr().err == "already stopping: a checkpoint is being saved, please wait\n"


def test_a_repeat_while_training_stops_at_once() -> None:
    with StopSignals() as signals, signals.forceable(), pytest.raises(ForcedStop) as stop:
        _send_twice(signals)
        time.sleep(5)  # a custom function stuck in a wait: the repeat ends it
    assert stop.value.signum == signal.SIGINT


def test_a_repeat_outside_training_claims_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with StopSignals() as signals:
        _send_twice(signals)
    assert capfd.readouterr().err == "already stopping, please wait\n"


def test_a_second_sigint_stops_a_run_stuck_in_a_custom_function(tmp_path: Path) -> None:
    """The custom termination function hangs mid-run: the first SIGINT cannot be acted on, the second stops the run
    at once (exit 130), marked interrupted at its last checkpoint, which `mbpo resume` continues from."""
    (tmp_path / "hanging_fns.py").write_text(HANGING_MODULE)
    runs = tmp_path / "runs"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([MBPO, "--runs-dir", str(runs), *TRAIN, "--json"], stdout=out, stderr=err,
                                env=_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not list(runs.glob("*/checkpoints/step-0000000150.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err").read_text()
            time.sleep(0.05)
        (tmp_path / "hang").touch()
        while not (tmp_path / "hanging").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err").read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # stuck in the function: the clean stop cannot happen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, (tmp_path / "err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = (tmp_path / "err").read_text()
    summary = json.loads((tmp_path / "out").read_text())
    with Registry.open(runs) as registry:
        run = registry.get_run(summary["id"])
        full = [c for c in registry.checkpoints(run.id) if c.kind != "best"]
        assert run.status == "interrupted" and run.error is not None and "second SIGINT" in run.error
        assert full and run.env_steps == full[-1].step == summary["env_steps"]
        assert all(checkpoint_file(runs, c.path).is_file() for c in full)
    assert "already stopping" not in stderr
    assert f"it continues from its checkpoint at env step {full[-1].step}" in stderr

    (tmp_path / "hang").unlink()
    resumed = subprocess.run([MBPO, "--runs-dir", str(runs), "resume", run.id, "--json"], capture_output=True,
                             text=True, env=_env(), cwd=tmp_path, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert (json.loads(resumed.stdout)["status"], json.loads(resumed.stdout)["env_steps"]) == ("finished", 600)
    assert f"from env step {full[-1].step}" in resumed.stderr
