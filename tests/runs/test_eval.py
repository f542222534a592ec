"""Tests for `mbpo eval` (mbpo_cli.runs.evaluation, .policy, .video) on a real tiny training run.

The run is tiny (300 env steps, small networks, one thread). With `train.keep_checkpoints` = 2 it keeps the
full checkpoints of steps 200 and 300 (step 100's was deleted) plus the best-policy file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelpers import TINY, mbpo, one_error_line, train_runs

from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.video import CHILD_MODULE, Attempt, encoder_missing
from mbpo_cli.runs.video_child import BACKEND_EXIT, BACKEND_MARK


class Trained(types.SimpleNamespace):
    runs_dir: Path
    run_id: str


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    runs_dir = tmp_path_factory.mktemp("eval") / "runs"
    yield Trained(runs_dir=runs_dir, run_id=train_runs(runs_dir, {"eval": TINY})["eval"])


def eval_json(trained: Trained, *args: str) -> dict:
    result = mbpo(trained.runs_dir, "eval", trained.run_id, "--json", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def evaluations(trained: Trained) -> list:
    with Registry.open(trained.runs_dir) as registry:
        return registry.evaluations(trained.run_id)


def test_eval_records_the_episodes(trained: Trained) -> None:
    before = len(evaluations(trained))
    data = eval_json(trained, "--episodes", "3", "--seed", "7")
    assert data["episodes"] == 3 and len(data["returns"]) == 3 and len(data["lengths"]) == 3
    assert data["checkpoint"] == "final:300" and data["checkpoint_step"] == 300  # latest = newest full checkpoint
    assert data["deterministic"] is True and data["seed"] == 7
    assert data["mean"] == pytest.approx(sum(data["returns"]) / 3)
    assert (data["min"], data["max"]) == (min(data["returns"]), max(data["returns"]))
    # InvertedPendulum-v5 pays 1 per step alive and 0 on the step that ends the episode
    assert all(n - 1 <= r <= n for r, n in zip(data["returns"], data["lengths"], strict=True))
    recorded = evaluations(trained)
    assert len(recorded) == before + 1
    last = recorded[-1]
    assert last.id == data["evaluation_id"]
    assert (last.episodes, last.seed, last.deterministic, last.checkpoint) == (3, 7, True, "final:300")
    assert last.returns == data["returns"] and last.lengths == data["lengths"]
    assert last.mean == pytest.approx(data["mean"]) and last.std == pytest.approx(data["std"])


def test_same_seed_same_returns(trained: Trained) -> None:
    first = eval_json(trained, "--episodes", "3", "--seed", "11")
    again = eval_json(trained, "--episodes", "3", "--seed", "11")
    assert first["returns"] == again["returns"] and first["lengths"] == again["lengths"]
    sampled = eval_json(trained, "--episodes", "3", "--seed", "11", "--stochastic")
    assert sampled["deterministic"] is False
    assert eval_json(trained, "--episodes", "3", "--seed", "11", "--stochastic")["returns"] == sampled["returns"]


def test_table_output(trained: Trained) -> None:
    result = mbpo(trained.runs_dir, "eval", "tiny-eval", "--episodes", "2")
    assert result.exit_code == 0, result.output
    for word in ("episode", "reset seed", "return", "length", "mean", "std", "min", "max", "recorded evaluation"):
        assert word in result.stdout


def test_best_checkpoint(trained: Trained) -> None:
    data = eval_json(trained, "--checkpoint", "best", "--episodes", "2")
    assert data["checkpoint"].startswith("best:")
    assert Path(data["checkpoint_path"]).name == "best-policy.pt"
    assert evaluations(trained)[-1].checkpoint == data["checkpoint"]


def test_checkpoint_by_step(trained: Trained) -> None:
    with Registry.open(trained.runs_dir) as registry:
        steps = sorted({c.step for c in registry.checkpoints(trained.run_id) if c.kind != "best"})
    assert steps == [200, 300]
    data = eval_json(trained, "--checkpoint", "200", "--episodes", "2")
    assert data["checkpoint"] == "periodic:200"
    assert Path(data["checkpoint_path"]).name == "step-0000000200.pt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "100"], "no checkpoint at env step 100 (available: 200, 300, best"),
        (["--checkpoint", "soon"], "--checkpoint: expected latest, best or an env step"),
        (["--episodes", "0"], "--episodes: must be at least 1"),
        (["--video", "film.gif"], "--video: the file must end in .mp4"),
    ],
)
def test_bad_input_is_one_line_exit_2(trained: Trained, args: list[str], message: str) -> None:
    before = len(evaluations(trained))
    assert message in one_error_line(mbpo(trained.runs_dir, "eval", trained.run_id, *args))
    assert len(evaluations(trained)) == before


def test_unknown_run(trained: Trained, tmp_path: Path) -> None:
    assert "no run 'nope'" in one_error_line(mbpo(trained.runs_dir, "eval", "nope"))
    assert "no run 'nope'" in one_error_line(mbpo(tmp_path / "none", "eval", "nope"))


def test_run_without_checkpoints(tmp_path: Path) -> None:
    with Registry.open(tmp_path) as registry:
        run = registry.create_run(name="empty", preset=None, env_id="InvertedPendulum-v5", algo="mbpo", seed=0,
                                  config={}, device="cpu", command="test", target_steps=100)
    assert "has no checkpoints" in one_error_line(mbpo(tmp_path, "eval", run.id))


def _backend_renders(backend: str) -> bool:
    """Independently of mbpo: can MuJoCo render a frame with this backend here?"""
    code = ("import gymnasium as gym; env = gym.make('InvertedPendulum-v5', render_mode='rgb_array'); "
            "env.reset(seed=0); assert env.render().ndim == 3")
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120).returncode == 0


def test_video_writes_a_file_or_says_what_is_missing(trained: Trained, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    path = tmp_path / "episode.mp4"
    before = len(evaluations(trained))
    result = mbpo(trained.runs_dir, "eval", trained.run_id, "--episodes", "1", "--video", str(path), "--json")
    if encoder_missing() is not None:  # imageio-ffmpeg is not installed here: one line naming the package
        line = one_error_line(result)
        assert "pip install imageio[ffmpeg]" in line
        assert not path.exists() and len(evaluations(trained)) == before
    elif any(_backend_renders(b) for b in ("egl", "osmesa")):
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert path.read_bytes()[4:8] == b"ftyp"
        assert data["video"]["return"] == data["returns"][0]  # the first evaluation episode, filmed
        assert data["video"]["frames"] == data["lengths"][0] + 1
    else:
        line = one_error_line(result)
        assert "no MuJoCo rendering backend works here" in line and "libosmesa6" in line
        assert not path.exists() and len(evaluations(trained)) == before


def test_video_with_a_backend_that_cannot_render(trained: Trained, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend is tried in a child process: a broken one is a clear one-line error, and nothing is recorded."""
    monkeypatch.setattr("mbpo_cli.runs.video.encoder_missing", lambda: None)
    monkeypatch.setenv("MUJOCO_GL", "bogus")
    before = len(evaluations(trained))
    line = one_error_line(mbpo(trained.runs_dir, "eval", trained.run_id, "--video", str(tmp_path / "x.mp4")))
    assert "MUJOCO_GL=bogus cannot render here" in line
    assert len(evaluations(trained)) == before


def test_a_moved_runs_directory_and_a_relative_one_from_elsewhere(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint paths are recorded relative to the runs directory: after `mv runs archive`, and with a relative
    `--runs-dir` given from another directory, eval and resume still find every checkpoint."""
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    trained = mbpo(Path("runs"), "train", *TINY, "--json")
    assert trained.exit_code == 0, trained.output
    run_id = json.loads(trained.stdout)["id"]
    (tmp_path / "project" / "runs").rename(tmp_path / "project" / "archive")
    monkeypatch.chdir(tmp_path / "elsewhere")
    relative = Path("../project/archive")
    evaluated = mbpo(relative, "eval", run_id, "--checkpoint", "best", "--episodes", "1", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["checkpoint_path"] == str(relative / run_id / "checkpoints" /
                                                                  "best-policy.pt")
    resumed = mbpo(relative, "resume", run_id, "--steps", "400", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["env_steps"] == 400


# ----- rendering backends that cannot render, simulated (the same on every machine) ------------------------------

FAKE_OPENGL = '''"""A stand-in for PyOpenGL that fails as it does where a backend cannot load: with MUJOCO_GL=egl the
process dies by a signal (as EGL does on some CPU machines), otherwise PyOpenGL's AttributeError for a library
that is not there."""
import os
import signal

if os.environ.get("MUJOCO_GL") == "egl":
    os.kill(os.getpid(), getattr(signal, os.environ.get("FAKE_EGL_SIGNAL", "SIGSEGV")))
raise AttributeError("'NoneType' object has no attribute 'glGetError'")
'''


@pytest.fixture
def broken_opengl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Child processes import the failing PyOpenGL above (this process has imported mujoco already, so it is not
    affected); the MP4 encoder counts as installed."""
    package = tmp_path / "fake-site" / "OpenGL"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_OPENGL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(package.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr("mbpo_cli.runs.video.encoder_missing", lambda: None)
    return tmp_path


def test_video_backends_that_crash_or_cannot_load_are_named(trained: Trained, broken_opengl: Path) -> None:
    """A child that dies by SIGSEGV (EGL) and one whose PyOpenGL raises AttributeError (OSMesa) both mean 'this
    backend cannot render': one line naming each backend and why, exit 2, nothing written or recorded."""
    path = broken_opengl / "episode.mp4"
    before = len(evaluations(trained))
    line = one_error_line(mbpo(trained.runs_dir, "eval", trained.run_id, "--video", str(path)))
    assert "--video: no MuJoCo rendering backend works here" in line
    assert "egl: crashed (SIGSEGV)" in line
    assert "osmesa: libOSMesa not found" in line or "osmesa: AttributeError: 'NoneType' object has no attribute " \
                                                    "'glGetError'" in line
    assert "; install " in line
    assert sorted(p.name for p in broken_opengl.iterdir()) == ["fake-site"]  # no video, no temporary file
    assert len(evaluations(trained)) == before


def test_video_never_lands_on_the_registry_or_the_run_s_files(trained: Trained, tmp_path: Path) -> None:
    """Refused before anything is filmed or recorded (exit 2): the run's folder, a link into it, /proc, and an
    existing file without --overwrite."""
    before = len(evaluations(trained))
    folder = trained.runs_dir / trained.run_id
    files = {p: p.read_bytes() for p in [trained.runs_dir / "registry.db", *folder.rglob("*")] if p.is_file()}
    link = tmp_path / "link.mp4"
    link.symlink_to(trained.runs_dir / "registry.db")
    old = tmp_path / "old.mp4"
    old.write_bytes(b"old")
    for path, says in ((folder / "episode.mp4", f"that is inside the folder of run {trained.run_id}"),
                       (link, "that is the registry database"), (Path("/proc/episode.mp4"), "cannot write in"),
                       (old, "the file exists; add --overwrite to replace it")):
        line = one_error_line(mbpo(trained.runs_dir, "eval", trained.run_id, "--video", str(path)))
        assert line.startswith(f"error: --video {path}") and says in line
    assert {p: p.read_bytes() for p in files} == files and old.read_bytes() == b"old"
    assert len(evaluations(trained)) == before


def test_video_debug_shows_each_backend_child_stderr(trained: Trained, broken_opengl: Path) -> None:
    result = mbpo(trained.runs_dir, "--debug", "eval", trained.run_id, "--video", str(broken_opengl / "x.mp4"))
    assert result.exit_code == 2, result.output
    assert "egl child process crashed (SIGSEGV)" in result.stderr
    assert "Fatal Python error: Segmentation fault" in result.stderr  # the crashed child's own report
    assert "osmesa child process exited with status 3" in result.stderr
    assert 'raise AttributeError("\'NoneType\' object has no attribute \'glGetError\'")' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --video: no MuJoCo rendering backend")


def test_video_child_stopped_from_outside_is_not_a_backend_failure(trained: Trained, broken_opengl: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL (the OOM killer, a user) says nothing about the backend: an internal failure naming the signal."""
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setenv("FAKE_EGL_SIGNAL", "SIGKILL")
    line = one_error_line(mbpo(trained.runs_dir, "eval", trained.run_id, "--video", str(broken_opengl / "x.mp4")),
                          code=1)
    assert "video recording (egl) stopped: the child process was killed by SIGKILL" in line


def test_a_mujoco_gl_that_cannot_load_does_not_break_the_evaluation(trained: Trained, broken_opengl: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """MUJOCO_GL is for the video child: mujoco 4 loads that backend when it is imported, and the evaluating
    process (which never renders) must not fail because the backend cannot load here."""
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    command = [sys.executable, "-c", "from mbpo_cli.cli import main; main()", "--runs-dir", str(trained.runs_dir),
               "eval", trained.run_id, "--episodes", "1"]
    plain = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["episodes"] == 1
    filmed = subprocess.run([*command, "--video", str(broken_opengl / "x.mp4")], capture_output=True, text=True,
                            timeout=300)
    assert filmed.returncode == 2, filmed.stderr
    assert ("MUJOCO_GL=osmesa cannot render here (osmesa: " in filmed.stderr
            or "pip install imageio[ffmpeg]" in filmed.stderr), filmed.stderr


def test_a_mujoco_gl_that_cannot_load_does_not_break_training(tmp_path: Path, broken_opengl: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Training never renders either: `MUJOCO_GL=osmesa mbpo train` where OSMesa cannot load trains (it failed
    with PyOpenGL's AttributeError, exit 1)."""
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    done = subprocess.run([sys.executable, "-c", "from mbpo_cli.cli import main; main()", "--runs-dir",
                           str(tmp_path / "runs"), "train", *TINY, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "finished"


# ----- a task that renders without OpenGL (classic control draws with pygame) ------------------------------------

FAKE_PYGAME = '''"""A stand-in for pygame that is not there: importing it fails as where it is not installed."""
raise ImportError("No module named 'pygame'")
'''


def test_video_of_a_classic_control_task_without_pygame_names_pygame(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """CartPole draws with pygame, not OpenGL: without pygame the one line names pygame and how to install it, not
    OSMesa or EGL (installing those would not help); nothing is written or recorded."""
    runs_dir = tmp_path / "runs"
    sets = ["train.init_steps=100", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
            "agent.batch_size=32", "dqn.hidden=32"]
    run_id = train_runs(runs_dir, {"cartpole": ["--env", "CartPole-v1", "--algo", "model-free", "--steps", "200",
                                                *(arg for item in sets for arg in ("--set", item))]})["cartpole"]
    fake = tmp_path / "no-pygame"
    fake.mkdir()
    (fake / "pygame.py").write_text(FAKE_PYGAME)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr("mbpo_cli.runs.video.encoder_missing", lambda: None)
    path = tmp_path / "cartpole.mp4"
    line = one_error_line(mbpo(runs_dir, "eval", run_id, "--episodes", "1", "--video", str(path)))
    assert line == ('error: --video: CartPole-v1 renders with pygame, which is not installed: pip install pygame '
                    '(or pip install "gymnasium[classic-control]"); OSMesa and EGL are for MuJoCo tasks')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-pygame", "runs"]  # no video, no temporary file
    with Registry.open(runs_dir) as registry:
        assert registry.evaluations(run_id) == []


def test_a_mujoco_task_whose_import_fails_is_still_a_backend_failure(trained: Trained, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing mujoco loads its MUJOCO_GL backend, and gymnasium turns an ImportError there into "MuJoCo is not
    installed" (DependencyNotInstalled): that is the backend's failure, not a missing package of the task."""
    package = tmp_path / "fake-site" / "mujoco"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("Unable to load OpenGL library")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(package.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setattr("mbpo_cli.runs.video.encoder_missing", lambda: None)
    line = one_error_line(mbpo(trained.runs_dir, "eval", trained.run_id, "--video", str(tmp_path / "x.mp4")))
    assert "MUJOCO_GL=osmesa cannot render here (osmesa: " in line
    assert "pygame" not in line and "package it renders with" not in line


# ----- evaluation numbers ----------------------------------------------------------------------------------------


def test_evaluations_are_numbered_per_run(trained: Trained) -> None:
    """'recorded evaluation N of run X': N counts the run's own evaluations, not every run's."""
    with Registry.open(trained.runs_dir) as registry:
        other = registry.create_run(name="other-run", preset=None, env_id="InvertedPendulum-v5", algo="mbpo",
                                    seed=0, config={}, device="cpu", command="test", target_steps=100)
        for _ in range(3):
            registry.add_evaluation(other.id, checkpoint="final:100", episodes=1, seed=0, deterministic=True,
                                    returns=[1.0], lengths=[1])
    before = len(evaluations(trained))
    data = eval_json(trained, "--episodes", "1")
    assert data["evaluation_number"] == before + 1
    assert data["evaluation_id"] == evaluations(trained)[-1].id >= data["evaluation_number"] + 3
    result = mbpo(trained.runs_dir, "eval", trained.run_id, "--episodes", "1")
    assert result.exit_code == 0, result.output
    assert f"recorded evaluation {before + 2} of run {trained.run_id} (1 episode)" in result.stdout


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "backend_failed", "ended", "why"),
    [
        (-11, "", "Fatal Python error: Segmentation fault", True, "crashed (SIGSEGV)", "crashed (SIGSEGV)"),
        (-6, "", "", True, "crashed (SIGABRT)", "crashed (SIGABRT)"),
        (-9, "", "", False, "was killed by SIGKILL", None),
        (3, "", "Traceback ...\nmbpo-video-backend-failed: ImportError: no EGL here\n", True,
         "exited with status 3", "ImportError: no EGL here"),
        (1, "", "Traceback ...\nValueError: bad\n", False, "exited with status 1", None),
    ],
)
def test_video_child_outcomes(returncode: int, stdout: str, stderr: str, backend_failed: bool, ended: str,
                              why: str | None) -> None:
    attempt = Attempt(backend="bogus", returncode=returncode, stdout=stdout, stderr=stderr)
    assert attempt.report is None
    assert attempt.backend_failed is backend_failed and attempt.ended == ended
    if why is not None:
        assert attempt.why == why


def test_the_video_child_is_a_module_whose_failure_before_the_first_frame_is_the_backend_s() -> None:
    """`python -m mbpo_cli.runs.video_child REQUEST`: a task that cannot be made for rendering ends it with the backend
    failure's status and mark (the parent then tries the next backend)."""
    request = json.dumps({"env": {"id": "NoSuchTask-v0", "kwargs": {}}, "seed": 0})
    done = subprocess.run([sys.executable, "-m", CHILD_MODULE, request], capture_output=True, text=True, timeout=120)
    assert done.returncode == BACKEND_EXIT, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(BACKEND_MARK)


def test_a_video_child_that_crashes_after_its_report_has_filmed() -> None:
    """The report is printed once the MP4 is complete and renamed: a crash while the process exits (an OpenGL
    library's teardown) does not lose the video."""
    report = {"return": 8.0, "length": 9, "frames": 10, "fps": 25}
    attempt = Attempt(backend="egl", returncode=-11, stdout=json.dumps(report) + "\n", stderr="")
    assert attempt.report == report
