"""`mbpo eval --video`: film the first evaluation episode into an MP4.

Video recording runs in a child process (``python -m mbpo_cli.runs.video_child``) because MuJoCo and PyOpenGL
pick their OpenGL backend from ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM`` once per process, at first use: each
candidate backend (EGL, OSMesa) is tried in a fresh process, and a backend that cannot render cannot crash
or poison the main process. A child that reports a failure before its first frame (PyOpenGL's AttributeError,
ImportError or OSError for a library that is not there) or dies by a crash signal (EGL's SIGSEGV on some CPU
machines) means "this backend cannot render here". A task that renders without OpenGL (classic control draws with
pygame) and lacks the package it draws with says so instead (gymnasium's ``DependencyNotInstalled``): no backend
would help, and the error names the package. The main process never renders: it imports MuJoCo with
rendering disabled (mujoco 4 loads the ``MUJOCO_GL`` backend on import), so that a ``MUJOCO_GL`` meant for the
video cannot break the evaluation. The MP4 encoder (imageio + imageio-ffmpeg) is optional and imported lazily.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbpo_cli.config.load import build_config
from mbpo_cli.engine.envs import env_spec
from mbpo_cli.engine.episodes import agent_policy, play_episode
from mbpo_cli.runs.checkpoint import load_file
from mbpo_cli.runs.policy import EvalError, Policy, policy_agent
from mbpo_cli.runs.video_child import BACKEND_EXIT, BACKEND_MARK, DEPENDENCY_EXIT, DEPENDENCY_MARK

CHILD_MODULE = "mbpo_cli.runs.video_child"
"""The video child, run as ``python -m CHILD_MODULE REQUEST`` (REQUEST: the JSON object :func:`record_video` makes)."""

ENCODER_HINT = "pip install imageio[ffmpeg]"
BACKENDS = ("egl", "osmesa")
"""MuJoCo's headless OpenGL backends, tried in a child process each (see :func:`backend_order`)."""
PYGAME_HINT = 'pip install pygame (or pip install "gymnasium[classic-control]")'
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP})
"""Signals that stop a child from outside (a user, the OOM killer): they say nothing about the backend. Any other
signal that ends the child (SIGSEGV, SIGABRT, SIGBUS, ...) is the backend crashing the process."""
VIDEO_TIMEOUT_S = 1800


def encoder_missing() -> str | None:
    """None when MP4 can be written (imageio and imageio-ffmpeg installed), else the error message."""
    missing = [name for name, module in (("imageio", "imageio"), ("imageio-ffmpeg", "imageio_ffmpeg"))
               if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"--video: writing MP4 needs {' and '.join(missing)}, which {verb} not installed: {ENCODER_HINT}"


def backend_order() -> list[str]:
    """Backends to try: ``$MUJOCO_GL`` alone when set; else EGL first on a GPU machine, OSMesa first on a CPU one."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        return [chosen]
    return list(BACKENDS) if torch.cuda.is_available() else list(reversed(BACKENDS))


def _backend_env(backend: str) -> dict[str, str]:
    env = dict(os.environ, MUJOCO_GL=backend)
    if backend in ("egl", "osmesa"):
        env["PYOPENGL_PLATFORM"] = backend
    else:
        env.pop("PYOPENGL_PLATFORM", None)
    return env


BACKEND_HELP = {
    "osmesa": "OSMesa for CPU rendering (Debian: apt-get install libosmesa6)",
    "egl": "EGL (a GPU driver's libEGL, or Mesa's: apt-get install libegl1 libegl-mesa0)",
}

_LIBRARIES = {"osmesa": "OSMesa", "egl": "EGL"}


@functools.cache
def missing_library(backend: str) -> str | None:
    """``libOSMesa`` / ``libEGL`` when the backend's library cannot be found here, else None."""
    library = _LIBRARIES.get(backend)
    if library is not None and ctypes.util.find_library(library) is None:
        return f"lib{library}"
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class Attempt:
    """One video child process: the backend it tried, how it ended, and what it wrote."""

    backend: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any] | None:
        """The child's JSON report (its last stdout line, printed once the video is complete), if it printed one."""
        lines = self.stdout.strip().splitlines()
        try:
            report = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            return None
        return report if isinstance(report, dict) and "frames" in report else None

    @property
    def ended(self) -> str:
        """How the process ended, in words: ``exited with status 3``, ``crashed (SIGSEGV)``, ..."""
        if self.returncode >= 0:
            return f"exited with status {self.returncode}"
        name = _signal_name(-self.returncode)
        return f"was killed by {name}" if -self.returncode in STOP_SIGNALS else f"crashed ({name})"

    @property
    def backend_failed(self) -> bool:
        """The backend cannot render here: the child said so before its first frame, or crashed by a signal."""
        if self.returncode == BACKEND_EXIT:
            return True
        return self.returncode < 0 and -self.returncode not in STOP_SIGNALS

    @property
    def missing_dependency(self) -> str | None:
        """Gymnasium's message when the environment lacks a package it renders with (no backend would help)."""
        if self.returncode != DEPENDENCY_EXIT:
            return None
        marked = [line for line in self.stderr.splitlines() if line.startswith(DEPENDENCY_MARK)]
        return marked[-1][len(DEPENDENCY_MARK):].strip()[:160] if marked else _last_line(self.stderr)

    @property
    def why(self) -> str:
        """Why the backend failed, short: its missing library when that is the cause (PyOpenGL's own error is
        cryptic), else the crash or the child's error line."""
        if self.returncode < 0:
            return self.ended
        library = missing_library(self.backend)
        if library is not None:
            return f"{library} not found"
        marked = [line for line in self.stderr.splitlines() if line.startswith(BACKEND_MARK)]
        return marked[-1][len(BACKEND_MARK):].strip()[:160] if marked else _last_line(self.stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no output"


def no_backend_message(failures: dict[str, str]) -> str:
    """One line naming the backends that failed, why, and what to install: the libraries that are missing, else
    the first backend tried (OSMesa on a CPU machine, EGL on a GPU one)."""
    tried = "; ".join(f"{b}: {why}" for b, why in failures.items())
    needs = [b for b in failures if b in BACKEND_HELP and missing_library(b)]
    if os.environ.get("MUJOCO_GL", "").strip():
        backend = next(iter(failures))
        install = f"install {BACKEND_HELP[backend]}, or " if needs else ""
        return (f"--video: MUJOCO_GL={backend} cannot render here ({tried}); {install}unset MUJOCO_GL to try "
                f"egl and osmesa")
    needs = needs or [b for b in failures if b in BACKEND_HELP][:1]
    install = f"; install {' or '.join(BACKEND_HELP[b] for b in needs)}" if needs else ""
    return f"--video: no MuJoCo rendering backend works here ({tried}){install}"


def missing_dependency_message(env_id: str, message: str) -> str:
    """One line for an environment that cannot render because a package is missing: pygame named for the tasks
    that draw with it (classic control), OSMesa and EGL said to be MuJoCo's."""
    if "pygame" in message.lower():
        return (f"--video: {env_id} renders with pygame, which is not installed: {PYGAME_HINT}; OSMesa and EGL are "
                "for MuJoCo tasks")
    return f"--video: {env_id} cannot render, a package it renders with is missing: {message}"


def check_video_path(path: Path) -> None:
    """EvalError unless ``path`` ends in .mp4."""
    if path.suffix.lower() != ".mp4":
        raise EvalError(f"--video: the file must end in .mp4, got {str(path)!r}")


def partial_file(output: Path) -> Path:
    """The file the child writes the video into before renaming it to ``output`` (hidden, next to it)."""
    return output.with_name(f".{output.stem}.tmp{output.suffix}")


def _run_child(backend: str, request: str, output: Path) -> Attempt:
    """Film in a fresh child process with ``backend``; a failed child's partial file is removed."""
    done = subprocess.run([sys.executable, "-m", CHILD_MODULE, request], env=_backend_env(backend),
                          capture_output=True, text=True, timeout=VIDEO_TIMEOUT_S, check=False)
    attempt = Attempt(backend=backend, returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)
    if attempt.report is None:
        partial_file(output).unlink(missing_ok=True)
    return attempt


def record_video(path: Path, policy: Policy, seed: int, deterministic: bool,
                 on_attempt: Callable[[Attempt], None] | None = None) -> dict[str, Any]:
    """Film the first evaluation episode (reset seed ``seed``, same actions as :func:`run_episodes`) into ``path``.

    Checks the encoder, then tries each backend of :func:`backend_order` in a fresh child process until one
    films the episode; ``on_attempt`` sees each child (``--debug`` shows their stderr). Returns the child's report:
    ``return``, ``length``, ``frames``, ``fps``, ``backend``. EvalError (nothing written) when the encoder is missing
    or no backend can render; RuntimeError when a child fails otherwise (its error, or the signal that stopped it).
    """
    check_video_path(path)
    missing = encoder_missing()
    if missing:
        raise EvalError(missing)
    request = json.dumps({
        "env": dataclasses.asdict(policy.config.env),
        "checkpoint": str(policy.file.absolute()),
        "sha256": policy.checkpoint.sha256,
        "step": policy.checkpoint.step,
        "config": policy.config.to_dict(),
        "seed": seed,
        "deterministic": deterministic,
        "output": str(path.absolute()),
    })
    failures: dict[str, str] = {}
    for backend in backend_order():
        attempt = _run_child(backend, request, path.absolute())
        if on_attempt is not None:
            on_attempt(attempt)
        report = attempt.report
        if report is not None:  # the video is complete (even if the process crashed while exiting)
            return {**report, "backend": backend}
        missing_package = attempt.missing_dependency
        if missing_package is not None:  # the task's own renderer: another backend would fail alike
            raise EvalError(missing_dependency_message(policy.config.env.id, missing_package))
        if attempt.backend_failed:
            failures[backend] = attempt.why
            continue
        if attempt.returncode < 0:
            raise RuntimeError(f"video recording ({backend}) stopped: the child process {attempt.ended}")
        raise RuntimeError(f"video recording ({backend}) failed: {_last_line(attempt.stderr or attempt.stdout)}")
    raise EvalError(no_backend_message(failures))


def film(env: Any, obs: Any, frame: np.ndarray, request: dict[str, Any]) -> None:
    """In the child (:mod:`mbpo_cli.runs.video_child`, once it rendered its first frame): load the policy, play one
    episode from the reset that gave ``obs`` and ``frame``, stream the frames into an MP4 (a temporary file renamed
    at the end) and print a JSON report on stdout."""
    import imageio.v2 as imageio  # optional: checked by the parent before it starts this process

    config = build_config(request["config"], "video")
    payload = load_file(Path(request["checkpoint"]), request["sha256"])
    spec = env_spec(env)
    agent = policy_agent(config, spec, payload, request["checkpoint"], int(request["step"]))
    deterministic = bool(request["deterministic"])
    generator = None if deterministic else torch.Generator().manual_seed(int(request["seed"]))
    fps = int(env.metadata.get("render_fps") or 30)
    output = Path(request["output"])
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_file(output)
    writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=2, ffmpeg_log_level="error")
    with writer:  # not `as writer`: imageio's stubs type `__enter__` as the base class, which has no append_data
        writer.append_data(frame)
        policy = agent_policy(agent, spec, torch.device("cpu"), deterministic, generator)
        episode = play_episode(env, policy, obs, after_step=lambda: writer.append_data(np.asarray(env.render())))
    os.replace(tmp, output)
    print(json.dumps({"return": episode.total_return, "length": episode.length, "frames": episode.length + 1,
                      "fps": fps}))
