"""End-to-end checkpoint and resume through the `mbpo` console script, in real subprocesses.

The property: a run stopped at any point after its first checkpoint (kill -9, SIGINT, SIGTERM, a
corrupt newest checkpoint) and continued with `mbpo resume RUN` reaches the same metrics at every
step and the same final weights as the same-seed run trained without interruption (on CPU).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mbpo_cli.config.load import resolve_config
from mbpo_cli.runs import checkpoint
from mbpo_cli.runs.checkpoint import CheckpointError, load_file
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import checkpoint_file, run_dir
from mbpo_cli.runs.process import is_locked, run_lock
from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.reporting import SilentReporter
from mbpo_cli.runs.resume import latest_good_checkpoint, resume_run
from mbpo_cli.runs.start import RunMeta, start_run

pytestmark = pytest.mark.xdist_group("resume")  # one process: the reference run is trained once
MBPO = str(Path(sys.executable).with_name("mbpo"))
STEPS = 600
# Tiny settings (a few seconds of training on one thread) covering exploration, model retrains every
# 50 steps, rollouts of length 1 -> 4, SAC updates, evaluations and a checkpoint every 50 steps.
TINY = [
    "train.init_steps=100", "train.epoch_length=50", "train.eval_episodes=1", "train.threads=1",
    "train.keep_checkpoints=2", "agent.updates_per_step=1", "sac.hidden=32", "agent.batch_size=32",
    "model.hidden=32", "model.ensemble_size=3", "model.elites=2", "model.max_epochs=3",
    "rollout.batch_size=200", "rollout.train_freq=50", "rollout.schedule=[1,3,1,4]",
]
TRAIN = ["train", "--preset", "inverted_pendulum", *(arg for item in TINY for arg in ("--set", item))]
UNTIMED = ("time_", "wall_seconds")
"""Metric keys that measure wall time; everything else must match exactly."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MBPO_REGISTRY_URL", None)
    return env


def mbpo(runs_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the console script to completion."""
    return subprocess.run([MBPO, "--runs-dir", str(runs_dir), *args], capture_output=True, text=True, env=_env(),
                          cwd=runs_dir, timeout=timeout, check=False)


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON object printed by `--json` (the exit status must be 0)."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal: exit 2, nothing on stdout, one `error: ...` line on stderr."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def comparable_metrics(registry: Registry, run_id: str) -> list[tuple[int, str, float]]:
    return [row for row in registry.metrics(run_id) if not row[1].startswith(UNTIMED)]


def final_agent(registry: Registry, run_id: str, runs_dir: Path) -> dict[str, torch.Tensor]:
    final = [c for c in registry.checkpoints(run_id) if c.kind == "final"]
    assert len(final) == 1
    return load_file(checkpoint_file(runs_dir, final[0].path), final[0].sha256)["agent"]


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def registry(runs_dir: Path) -> Iterator[Registry]:
    reg = Registry.open(runs_dir)
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def reference(runs_dir: Path, registry: Registry) -> dict[str, Any]:
    """Run A: the uninterrupted run every interrupted one is compared with."""
    out = summary(mbpo(runs_dir, *TRAIN, "--steps", str(STEPS), "--json"))
    assert out["status"] == "finished" and out["env_steps"] == STEPS
    metrics = comparable_metrics(registry, out["id"])
    assert [s for s, k, _ in metrics if k == "eval_return"] == list(range(50, STEPS + 1, 50))
    return {"id": out["id"], "metrics": metrics, "agent": final_agent(registry, out["id"], runs_dir),
            "runs_dir": runs_dir}


class Training:
    """A `mbpo train` subprocess of the tiny run, its output going to files."""

    def __init__(self, runs_dir: Path, registry: Registry, *extra: str, command: tuple[str, ...] = tuple(TRAIN),
                 steps: int = STEPS) -> None:
        self.registry = registry
        self.known = {r.id for r in registry.list_runs()}
        self.out = runs_dir / f"out-{time.monotonic_ns()}"
        self.err = self.out.with_suffix(".err")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([MBPO, "--runs-dir", str(runs_dir), *command, "--steps", str(steps), *extra],
                                         stdout=out, stderr=err, env=_env(), cwd=runs_dir)
        self.run_id = ""

    def wait_for_checkpoint(self, step: int, timeout: float = 120) -> str:
        """Block until the new run has a periodic checkpoint at env step `step` or later; its id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"training ended early:\n{self.output()}"
            new = [r for r in self.registry.list_runs() if r.id not in self.known]
            if new:
                self.run_id = new[0].id
                if any(c.kind == "periodic" and c.step >= step for c in self.registry.checkpoints(self.run_id)):
                    return self.run_id
            time.sleep(0.01)
        self.proc.kill()
        raise AssertionError("timed out waiting for checkpoints")

    def stop(self, sig: int) -> int:
        """Send `sig` and wait; the exit status."""
        assert self.proc.poll() is None, f"training ended before the signal:\n{self.output()}"
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()


@pytest.fixture
def start_training(runs_dir: Path, registry: Registry) -> Iterator[Any]:
    """Start tiny training subprocesses; any still alive when the test ends is killed."""
    started: list[Training] = []

    def start(*extra: str) -> Training:
        started.append(Training(runs_dir, registry, *extra))
        return started[-1]

    yield start
    for training in started:
        if training.proc.poll() is None:
            training.proc.kill()
            training.proc.wait()


def assert_same_as_reference(registry: Registry, reference: dict[str, Any], run_id: str) -> None:
    run = registry.get_run(run_id)
    assert run.status == "finished" and run.env_steps == STEPS
    got = comparable_metrics(registry, run_id)
    evals = [(s, v) for s, k, v in got if k == "eval_return"]
    assert evals == [(s, v) for s, k, v in reference["metrics"] if k == "eval_return"]
    assert got == reference["metrics"]
    assert_same_weights(final_agent(registry, run_id, reference["runs_dir"]), reference["agent"])


def assert_same_weights(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Every tensor equal, and every other entry (counters kept as extra state) too."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value, key


def full_checkpoints(registry: Registry, run_id: str) -> list[Any]:
    return [c for c in registry.checkpoints(run_id) if c.kind != "best"]


# ---------------------------------------------------------------------------------------------
# Interrupted, then resumed: exactly the uninterrupted run
# ---------------------------------------------------------------------------------------------


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


SHARED = ("train.init_steps=100", "train.epoch_length=50", "train.eval_episodes=1", "train.threads=1",
          "agent.updates_per_step=1", "agent.batch_size=32", "model.hidden=32", "model.ensemble_size=3",
          "model.elites=2", "model.max_epochs=3", "rollout.batch_size=200", "rollout.train_freq=50")
AGENT_RUNS = {
    "td3": ["train", "--preset", "inverted_pendulum", *_sets(*SHARED, "agent.name=td3", "td3.hidden=32",
                                                              "td3.policy_delay=3")],
    "ddpg": ["train", "--preset", "inverted_pendulum", *_sets(*SHARED, "agent.name=ddpg", "ddpg.hidden=32")],
    # SAC with the adaptive horizon: its per-retrain generations size the model buffer
    "sac-adaptive": ["train", "--preset", "inverted_pendulum", *_sets(*SHARED, "sac.hidden=32", "rollout.adaptive=true",
                                                                      "rollout.adaptive_max_length=4")],
    # CartPole from --env: DQN, the learned termination (its classifier is checkpointed too), epsilon-greedy
    "dqn": ["train", "--env", "CartPole-v1", *_sets(*SHARED, "dqn.hidden=32", "done_model.hidden=16",
                                                     "done_model.max_epochs=3", "dqn.epsilon_decay_steps=300")],
}


@pytest.mark.parametrize("agent", sorted(AGENT_RUNS))
def test_every_agent_resumes_exactly_after_kill9(tmp_path: Path, agent: str) -> None:
    """Each base agent (SAC is the tests above; here with the adaptive horizon) continues bit for bit after kill -9
    after its first checkpoint, model diagnostics included."""
    steps, command = 300, AGENT_RUNS[agent]
    with Registry.open(tmp_path) as reg:
        ref = summary(mbpo(tmp_path, *command, "--steps", str(steps), "--json"))
        training = Training(tmp_path, reg, "--json", command=tuple(command), steps=steps)
        try:
            run_id = training.wait_for_checkpoint(150)
            assert training.stop(signal.SIGKILL) == -signal.SIGKILL
        finally:
            if training.proc.poll() is None:
                training.proc.kill()
        assert reg.get_run(run_id).env_steps < steps
        out = summary(mbpo(tmp_path, "resume", run_id, "--json"))
        assert out["status"] == "finished" and out["env_steps"] == steps
        want, got = comparable_metrics(reg, ref["id"]), comparable_metrics(reg, run_id)
        assert [r for r in got if r[1] == "eval_return"] == [r for r in want if r[1] == "eval_return"]
        assert got == want
        assert_same_weights(final_agent(reg, run_id, tmp_path), final_agent(reg, ref["id"], tmp_path))
        keys = {k for _, k, _ in got}
        expected = {"dqn": {"q_loss", "epsilon", "done_holdout_recall"},
                    "sac-adaptive": {"rollout_length_p90", "rollout_threshold", "diag_open_loop_h10"}}
        assert expected.get(agent, {"critic_loss", "actor_loss"}) <= keys


def test_kill9_then_resume_is_exact(
    runs_dir: Path, registry: Registry, reference: dict[str, Any], start_training: Any
) -> None:
    training = start_training("--json")
    run_id = training.wait_for_checkpoint(300)  # the model ring buffer has wrapped by then
    assert training.stop(signal.SIGKILL) == -signal.SIGKILL
    run = registry.get_run(run_id)
    assert run.status == "running" and run.env_steps < STEPS
    assert not is_locked(run_dir(runs_dir, run_id))

    out = summary(mbpo(runs_dir, "resume", run_id, "--json"))
    assert out["id"] == run_id and out["status"] == "finished" and out["env_steps"] == STEPS
    assert_same_as_reference(registry, reference, run_id)


def test_sigint_then_resume_is_exact(
    runs_dir: Path, registry: Registry, reference: dict[str, Any], start_training: Any
) -> None:
    training = start_training()
    run_id = training.wait_for_checkpoint(100)
    assert training.stop(signal.SIGINT) == 130
    run = registry.get_run(run_id)
    assert run.status == "interrupted" and run.env_steps < STEPS
    assert f"mbpo resume {run_id}" in training.output()
    newest = full_checkpoints(registry, run_id)[-1]
    assert newest.step == run.env_steps  # the stop saved a checkpoint at the step it stopped (mid-epoch as a rule)
    # keep_checkpoints=2: two periodic checkpoints and the best policy, on disk and in the registry.
    rows = registry.checkpoints(run_id)
    assert sorted(c.kind for c in rows) == ["best", "periodic", "periodic"]
    on_disk = sorted(p.name for p in (run_dir(runs_dir, run_id) / "checkpoints").iterdir())
    assert on_disk == sorted(Path(c.path).name for c in rows)
    assert all(not Path(c.path).is_absolute() and c.path.startswith(f"{run_id}/checkpoints/") for c in rows)

    result = mbpo(runs_dir, "resume", run_id, "--json")
    assert f"from env step {run.env_steps}" in result.stderr
    summary(result)
    assert_same_as_reference(registry, reference, run_id)


def test_sigterm_then_truncated_checkpoint_resumes_from_the_previous(
    runs_dir: Path, registry: Registry, reference: dict[str, Any], start_training: Any
) -> None:
    training = start_training("--json")
    run_id = training.wait_for_checkpoint(200)
    assert training.stop(signal.SIGTERM) == 143
    assert registry.get_run(run_id).status == "interrupted"
    newest, previous = full_checkpoints(registry, run_id)[-1], full_checkpoints(registry, run_id)[-2]
    path = checkpoint_file(runs_dir, newest.path)
    path.write_bytes(path.read_bytes()[: newest.bytes // 2])

    result = mbpo(runs_dir, "resume", run_id, "--json")
    assert "warning:" in result.stderr and "trying the previous checkpoint" in result.stderr
    assert f"from env step {previous.step} " in result.stderr
    summary(result)
    assert_same_as_reference(registry, reference, run_id)


def test_flipped_byte_resumes_from_the_previous_checkpoint(
    runs_dir: Path, registry: Registry, reference: dict[str, Any], start_training: Any
) -> None:
    training = start_training("--json")
    run_id = training.wait_for_checkpoint(350)  # the previous one has a wrapped model buffer
    assert training.stop(signal.SIGKILL) == -signal.SIGKILL
    newest, previous = full_checkpoints(registry, run_id)[-1], full_checkpoints(registry, run_id)[-2]
    data = bytearray(checkpoint_file(runs_dir, newest.path).read_bytes())
    data[len(data) // 3] ^= 0x40
    checkpoint_file(runs_dir, newest.path).write_bytes(bytes(data))

    result = mbpo(runs_dir, "resume", run_id)  # the Rich display: warnings on stderr
    assert result.returncode == 0, result.stderr
    assert "sha256 mismatch" in result.stderr and "trying the previous checkpoint" in result.stderr
    assert f"from env step {previous.step} " in result.stderr
    assert_same_as_reference(registry, reference, run_id)


def test_keeps_the_last_n_checkpoints(runs_dir: Path, registry: Registry, reference: dict[str, Any]) -> None:
    run_id = reference["id"]
    rows = registry.checkpoints(run_id)
    assert sorted(c.kind for c in rows) == ["best", "final", "periodic"]
    folder = run_dir(runs_dir, run_id) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(c.path).name for c in rows)
    assert sorted(p.name for p in folder.iterdir()) == [
        "best-policy.pt", f"step-{STEPS - 50:010d}.pt", f"step-{STEPS:010d}.pt"
    ]
    for row in rows:
        load_file(checkpoint_file(runs_dir, row.path), row.sha256)


# ---------------------------------------------------------------------------------------------
# Refusals and extensions
# ---------------------------------------------------------------------------------------------


def test_resume_refuses_an_unknown_run(runs_dir: Path, registry: Registry) -> None:
    assert "no run 'deadbeef'" in one_line_error(mbpo(runs_dir, "resume", "deadbeef"))


def test_resume_refuses_a_live_run(runs_dir: Path, registry: Registry, reference: dict[str, Any]) -> None:
    folder = run_dir(runs_dir, reference["id"])
    with run_lock(folder):
        message = one_line_error(mbpo(runs_dir, "resume", reference["id"], "--steps", "100000", timeout=60))
    assert "still running in another process" in message
    assert registry.get_run(reference["id"]).status == "finished"


def test_finished_run_refusals_config_change_and_extension(runs_dir: Path, registry: Registry) -> None:
    out = summary(mbpo(runs_dir, *TRAIN, "--steps", "100", "--json"))
    run_id = out["id"]
    assert "is finished at 100 steps" in one_line_error(mbpo(runs_dir, "resume", run_id))

    config_file = run_dir(runs_dir, run_id) / "config.yaml"
    original = config_file.read_text()
    edited = yaml.safe_load(original)
    edited["train"]["eval_episodes"] = 2
    config_file.write_text(yaml.safe_dump(edited, sort_keys=False))
    message = one_line_error(mbpo(runs_dir, "resume", run_id, "--steps", "200"))
    assert "config.yaml changed" in message and "train.eval_episodes" in message and "--force" in message
    assert registry.get_run(run_id).env_steps == 100

    result = mbpo(runs_dir, "resume", run_id, "--steps", "200", "--force", "--json")
    assert "config changed (--force): train.eval_episodes: 1 -> 2" in result.stderr
    out = summary(result)
    assert out["status"] == "finished" and out["env_steps"] == 200
    run = registry.get_run(run_id)
    assert run.config["train"]["eval_episodes"] == 2 and run.config["train"]["steps"] == 200
    assert yaml.safe_load(config_file.read_text())["train"]["eval_episodes"] == 2
    rows = registry.metrics(run_id)
    assert len({(s, k) for s, k, _ in rows}) == len(rows)
    keys = {k for _, k, _ in rows}
    for key in ("eval_return", "epoch", "agent_updates", "wall_seconds"):
        assert key in keys
        assert [s for s, k, _ in rows if k == key] == [50, 100, 150, 200], key
    assert [v for _, k, v in rows if k == "epoch"] == [1.0, 2.0, 3.0, 4.0]


# ---------------------------------------------------------------------------------------------
# A checkpoint that cannot be written (disk full), in process
# ---------------------------------------------------------------------------------------------


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolve_config(preset="inverted_pendulum", overrides=TINY, steps=150)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "step-0000000100.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    with Registry.open(tmp_path) as reg:
        monkeypatch.setattr(checkpoint.os, "replace", replace)
        with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*: No space left on device"):
            start_run(config, RunMeta(preset="inverted_pendulum", name="full", command="test"), reg, tmp_path,
                      SilentReporter())
        monkeypatch.undo()
        run = reg.get_run("full")
        assert run.status == "failed" and "No space left on device" in (run.error or "")
        folder = run_dir(tmp_path, run.id) / "checkpoints"
        assert sorted(p.name for p in folder.iterdir()) == ["best-policy.pt", "step-0000000050.pt"]
        (previous,) = full_checkpoints(reg, run.id)
        saved = load_file(checkpoint_file(tmp_path, previous.path), previous.sha256)
        assert previous.step == 50 and saved["counters"]["env_step"] == 50

        with pytest.raises(RunError, match="--steps 40 is below its checkpoint at env step 50"):
            resume_run(reg, tmp_path, run.id, SilentReporter(), steps=40)
        outcome = resume_run(reg, tmp_path, run.id, SilentReporter())  # space is back
        assert outcome.status == "finished" and outcome.run.env_steps == 150
        assert [c.step for c in full_checkpoints(reg, run.id)] == [100, 150]


def test_a_checkpoint_holding_something_else_is_skipped_like_a_corrupt_one(tmp_path: Path) -> None:
    """A file that unpickles safely (and matches its recorded sha256) but is not a full checkpoint, such as
    `{"format": 1}`: the run resumes from the previous checkpoint with a warning, as for a corrupt file."""
    config = resolve_config(preset="inverted_pendulum", overrides=[*TINY, "train.keep_checkpoints=3"], steps=150)
    with Registry.open(tmp_path) as reg:
        outcome = start_run(config, RunMeta(preset=None, name="odd", command="test"), reg, tmp_path, SilentReporter())
        assert outcome.status == "finished"
        newest = full_checkpoints(reg, outcome.run.id)[-1]
        size, digest = checkpoint.save_file({"format": 1}, checkpoint_file(tmp_path, newest.path))
        reg.remove_checkpoint(outcome.run.id, newest.path)
        reg.add_checkpoint(outcome.run.id, step=newest.step, path=newest.path, bytes=size, sha256=digest,
                           kind=newest.kind)
        messages: list[str] = []
        reporter = SilentReporter()
        reporter.message = messages.append  # type: ignore[method-assign]
        info, payload = latest_good_checkpoint(reg, reg.get_run(outcome.run.id), reporter, tmp_path)
    assert info.step == 100 and payload["counters"]["env_step"] == 100
    assert messages == [f"warning: checkpoint {tmp_path / newest.path} is not a full mbpo checkpoint (config is "
                        "missing or of the wrong type); trying the previous checkpoint"]


# ---------------------------------------------------------------------------------------------
# Stops at awkward moments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_with_the_output_pipe_closed_still_checkpoints(tmp_path: Path, sig: int) -> None:
    """`mbpo train 2>&1 | tee log` whose tee has gone: the stop must still save, mark the run interrupted and
    exit 130/143 (the stop notice, which can no longer be written, must not fail the save)."""
    with Registry.open(tmp_path) as reg:
        proc = subprocess.Popen([MBPO, "--runs-dir", str(tmp_path), *TRAIN, "--steps", "5000"], env=_env(),
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while not any(c.kind == "periodic" for r in reg.list_runs() for c in reg.checkpoints(r.id)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.stdout.close()  # the reader goes away
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 128 + sig
        (run,) = reg.list_runs()
        assert run.status == "interrupted" and run.env_steps < 5000
        newest = full_checkpoints(reg, run.id)[-1]
        saved = load_file(checkpoint_file(tmp_path, newest.path), newest.sha256)
        assert newest.step == run.env_steps and saved["counters"]["env_step"] == run.env_steps


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_set_up_leaves_an_interrupted_run_at_step_0(tmp_path: Path, sig: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal arrives while the environment and networks are being built (here: from inside the build)."""
    from mbpo_cli.runs import start

    real_build = start.build_run

    def build_then_signal(*args: Any, **kwargs: Any) -> Any:
        state = real_build(*args, **kwargs)
        os.kill(os.getpid(), sig)
        return state

    monkeypatch.setattr(start, "build_run", build_then_signal)
    config = resolve_config(preset="inverted_pendulum", overrides=TINY, steps=150)
    with Registry.open(tmp_path) as reg:
        outcome = start_run(config, RunMeta(preset=None, name="early", command="test"), reg, tmp_path,
                            SilentReporter())
        assert (outcome.status, outcome.exit_code, outcome.run.env_steps) == ("interrupted", 128 + sig, 0)
        assert [c.step for c in full_checkpoints(reg, outcome.run.id)] == [0]
        monkeypatch.undo()
        resumed = resume_run(reg, tmp_path, "early", SilentReporter())
        assert (resumed.status, resumed.run.env_steps) == ("finished", 150)


def test_resume_of_a_run_whose_folder_is_gone(runs_dir: Path, registry: Registry, reference: dict[str, Any],
                                              tmp_path: Path) -> None:
    folder, elsewhere = run_dir(runs_dir, reference["id"]), tmp_path / "moved"
    folder.rename(elsewhere)
    try:
        message = one_line_error(mbpo(runs_dir, "resume", reference["id"], "--steps", str(STEPS + 50)))
    finally:
        elsewhere.rename(folder)
    assert message == (f"error: run {reference['id']} cannot be resumed: its folder {folder} is gone "
                       "(with its checkpoints)")


def test_a_killed_run_shows_as_stale_at_once(runs_dir: Path, registry: Registry, start_training: Any) -> None:
    training = start_training("--json")
    run_id = training.wait_for_checkpoint(100)
    assert training.stop(signal.SIGKILL) == -signal.SIGKILL
    shown = json.loads(mbpo(runs_dir, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "interrupted (stale)"  # not `running` for the heartbeat's 120 s


def test_deleting_the_registry_while_a_run_trains_fails_it_loudly(tmp_path: Path) -> None:
    """The run would otherwise finish, exit 0, and exist nowhere: its rows went with the deleted file."""
    with Registry.open(tmp_path) as reg:
        proc = subprocess.Popen([MBPO, "--runs-dir", str(tmp_path), *TRAIN, "--steps", "5000"], env=_env(),
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not any(c.kind == "periodic" for r in reg.list_runs() for c in reg.checkpoints(r.id)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"registry.db{suffix}").unlink(missing_ok=True)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"error: the registry {tmp_path / 'registry.db'} was deleted or replaced while this process used it" \
        in stderr, stderr
    assert "Traceback" not in stderr
