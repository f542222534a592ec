"""`mbpo eval`: load a run's policy from a checkpoint, evaluate it over seeded episodes, optionally film one.

Evaluation runs on the CPU (one observation at a time; a small MLP gains nothing from a GPU), so the
same checkpoint, seed and mode give the same returns on every machine. Episode ``i`` resets the
environment with seed ``seed + i``; ``--stochastic`` samples actions from the policy with a
``torch.Generator`` seeded ``seed``, otherwise the policy's mean action is used.

Video recording runs in a child process (``python -c _CHILD``) because MuJoCo and PyOpenGL
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
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from mbpo_cli.agents.factory import BuiltAgent, make_agent
from mbpo_cli.config.load import ConfigError, build_config
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env, to_env_action
from mbpo_cli.engine.loop import evaluate
from mbpo_cli.runs.checkpoint import CheckpointError, load_file
from mbpo_cli.runs.registry import CheckpointInfo, Registry, RunInfo
from mbpo_cli.runs.session import RunError, checkpoint_file

ENCODER_HINT = "pip install imageio[ffmpeg]"
BACKENDS = ("egl", "osmesa")
"""MuJoCo's headless OpenGL backends, tried in a child process each (see :func:`backend_order`)."""
BACKEND_EXIT = 3
"""Exit status of the video child process when the rendering backend does not work."""
BACKEND_MARK = "mbpo-video-backend-failed: "
"""Starts the video child's last stderr line when it exits with :data:`BACKEND_EXIT` (followed by the error)."""
DEPENDENCY_EXIT = 4
"""Exit status of the video child process when the environment lacks a package it renders with (not MuJoCo's)."""
DEPENDENCY_MARK = "mbpo-video-dependency-missing: "
"""Starts the video child's last stderr line when it exits with :data:`DEPENDENCY_EXIT` (followed by gymnasium's
message, e.g. ``pygame is not installed, ...``)."""
PYGAME_HINT = 'pip install pygame (or pip install "gymnasium[classic-control]")'
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP})
"""Signals that stop a child from outside (a user, the OOM killer): they say nothing about the backend. Any other
signal that ends the child (SIGSEGV, SIGABRT, SIGBUS, ...) is the backend crashing the process."""
VIDEO_TIMEOUT_S = 1800


class EvalError(RunError):
    """Bad input to `mbpo eval` or an impossible request (one line; the CLI exits 2)."""


@dataclass(frozen=True)
class Policy:
    """A run's policy, ready to act, and where it came from."""

    agent: BuiltAgent
    config: Config
    checkpoint: CheckpointInfo
    file: Path
    """The checkpoint's file."""

    @property
    def label(self) -> str:
        """How the evaluation names its checkpoint in the registry: ``<kind>:<step>``, e.g. ``best:300``."""
        return f"{self.checkpoint.kind}:{self.checkpoint.step}"


@dataclass(frozen=True)
class EvalResult:
    """Per-episode returns and lengths of one evaluation (std is the population std, as in the registry)."""

    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        """Mean return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Population standard deviation of the returns."""
        return float(np.std(self.returns))

    @property
    def min(self) -> float:
        """Lowest return."""
        return float(np.min(self.returns))

    @property
    def max(self) -> float:
        """Highest return."""
        return float(np.max(self.returns))


# ---------------------------------------------------------------------------------------------
# Checkpoints and policies
# ---------------------------------------------------------------------------------------------


def _steps_available(checkpoints: list[CheckpointInfo]) -> str:
    full = sorted({c.step for c in checkpoints if c.kind != "best"})
    best = [c.step for c in checkpoints if c.kind == "best"]
    parts = [f"{s:,}" for s in full] + [f"best (step {s:,})" for s in best]
    return ", ".join(parts) or "none"


def select_checkpoint(checkpoints: list[CheckpointInfo], run: RunInfo, which: str) -> CheckpointInfo:
    """The checkpoint that ``which`` names: ``latest``, ``best`` or an env step.

    ``latest`` is the newest full checkpoint (the best-policy file when the run has no full one);
    a step picks the full checkpoint saved at that env step (or the best policy if that is the only
    file of that step). EvalError when the run has no checkpoint or none matches.
    """
    if not checkpoints:
        raise EvalError(f"run {run.id} has no checkpoints to evaluate")
    full = [c for c in checkpoints if c.kind != "best"]
    best = [c for c in checkpoints if c.kind == "best"]
    if which == "latest":
        return (full or best)[-1]
    if which == "best":
        if not best:
            raise EvalError(f"run {run.id} has no best-policy checkpoint (available: {_steps_available(checkpoints)})")
        return best[-1]
    try:
        step = int(which.replace("_", "").replace(",", ""))
    except ValueError:
        raise EvalError(f"--checkpoint: expected latest, best or an env step, got {which!r}") from None
    matches = [c for c in full if c.step == step] or [c for c in best if c.step == step]
    if not matches:
        raise EvalError(f"run {run.id} has no checkpoint at env step {step:,} "
                        f"(available: {_steps_available(checkpoints)})")
    return matches[-1]


def policy_agent(config: Config, spec: EnvSpec, payload: dict[str, Any], path: str, step: int) -> BuiltAgent:
    """The run's agent on the CPU, acting as it did at env step `step` of the run.

    A full checkpoint restores the whole agent (key ``agent``); a best-policy file restores its acting network
    (key ``policy``, or ``actor`` in files written before other agents existed).
    """
    agent = make_agent(config, spec.obs_dim, spec.act_dim)
    agent_weights, policy_weights = payload.get("agent"), payload.get("policy", payload.get("actor"))
    try:
        if isinstance(agent_weights, dict):
            agent.load_state_dict(agent_weights)
        elif isinstance(policy_weights, dict):
            agent.policy.load_state_dict(policy_weights)
        else:
            raise CheckpointError(f"checkpoint {path} holds no policy weights")
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the run's policy: {str(err).splitlines()[0]}") from None
    agent.on_env_step(step)
    return agent.eval()


def load_policy(registry: Registry, run: RunInfo, runs_dir: Path, which: str = "latest") -> Policy:
    """Verify (sha256 from the registry) and load the chosen checkpoint's policy on the CPU."""
    info = select_checkpoint(registry.checkpoints(run.id), run, which)
    file = checkpoint_file(runs_dir, info.path)
    payload = load_file(file, info.sha256)
    try:
        config = build_config(payload.get("config") or run.config, info.path)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {info.path} has an unusable config: {err}") from None
    env = make_env(config.env)
    spec = env_spec(env)
    env.close()
    agent = policy_agent(config, spec, payload, info.path, info.step)
    return Policy(agent=agent, config=config, checkpoint=info, file=file)


def run_episodes(policy: Policy, episodes: int, seed: int, deterministic: bool = True) -> EvalResult:
    """``episodes`` episodes with resets seeded ``seed, seed + 1, ...``; stochastic actions use a generator
    seeded ``seed``. The same policy, seed and mode give the same returns."""
    if episodes < 1:
        raise EvalError(f"--episodes: must be at least 1, got {episodes}")
    env = make_env(policy.config.env)
    try:
        generator = None if deterministic else torch.Generator().manual_seed(seed)
        returns, lengths = evaluate(policy.agent, env, env_spec(env), episodes, seed, torch.device("cpu"),
                                    deterministic=deterministic, generator=generator)
    finally:
        env.close()
    return EvalResult(returns=returns, lengths=lengths)


class Recorded(NamedTuple):
    """Where an evaluation was recorded."""

    id: int
    """The registry row's id, shared by every run's evaluations (``mbpo runs show RUN --json``'s ``evaluations``)."""
    number: int
    """The run's own evaluation number: 1 for its first evaluation."""


def record_evaluation(registry: Registry, policy: Policy, result: EvalResult, seed: int,
                      deterministic: bool) -> Recorded:
    """Store the evaluation in the registry; returns its row id and its number among the run's evaluations."""
    run_id = policy.checkpoint.run_id
    info = registry.add_evaluation(run_id, checkpoint=policy.label, episodes=len(result.returns),
                                   seed=seed, deterministic=deterministic, returns=result.returns,
                                   lengths=result.lengths)
    ids = [e.id for e in registry.evaluations(run_id)]
    return Recorded(id=info.id, number=ids.index(info.id) + 1)


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


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
    done = subprocess.run([sys.executable, "-c", _CHILD, request], env=_backend_env(backend),
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


# ----- the child process ------------------------------------------------------------------------

_CHILD = f"""
import faulthandler, json, sys, traceback, warnings
faulthandler.enable()  # a backend that crashes the process still leaves the Python stack on stderr (--debug)
request = json.loads(sys.argv[1])
env_config = request["env"]
try:  # a failure before the first frame is the backend's (importing mujoco loads it) or a missing package's
    import gymnasium as gym
    import numpy as np
    from mbpo_cli.config.load import build_config
    from mbpo_cli.engine.env_ids import register_namespace
    from mbpo_cli.engine.env_wrappers import wrapped
    register_namespace(env_config["id"], render=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_config["id"], render_mode="rgb_array", **env_config["kwargs"])
        env = wrapped(env, build_config(request["config"], "video").env)
    obs, _ = env.reset(seed=request["seed"])
    frame = env.render()
    if frame is None or np.ndim(frame) != 3:
        raise RuntimeError("the environment rendered no RGB frame")
except Exception as err:
    traceback.print_exc()
    line = (str(err).strip().splitlines() or [""])[0]
    causes = [err]
    while causes[-1].__cause__ is not None:
        causes.append(causes[-1].__cause__)
    # a package the task renders with (pygame) is missing; MuJoCo's own (its import loads the OpenGL backend) is not
    mujoco = "mujoco" in line.lower() or any(
        (getattr(c, "name", None) or "").split(".")[0] in ("mujoco", "OpenGL") for c in causes)
    if type(err).__name__ == "DependencyNotInstalled" and not mujoco:
        print({DEPENDENCY_MARK!r} + line, file=sys.stderr)
        sys.exit({DEPENDENCY_EXIT})
    print({BACKEND_MARK!r} + type(err).__name__ + ": " + line, file=sys.stderr)
    sys.exit({BACKEND_EXIT})
from mbpo_cli.runs.evaluation import film
try:
    film(env, obs, frame, request)
finally:
    env.close()
"""
"""The video child: renders a first frame with only gymnasium and mujoco imported (a backend that fails costs
about a second), then films the episode with :func:`film`."""


def film(env: Any, obs: Any, frame: np.ndarray, request: dict[str, Any]) -> None:
    """In the child: load the policy, play one episode from the reset that gave ``obs`` and ``frame``, stream the
    frames into an MP4 (a temporary file renamed at the end) and print a JSON report on stdout."""
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
    total, length, frames, done = 0.0, 0, 0, False
    writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=2, ffmpeg_log_level="error")
    with writer:  # not `as writer`: imageio's stubs type `__enter__` as the base class, which has no append_data
        writer.append_data(frame)
        frames += 1
        while not done:
            with torch.no_grad():
                x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).unsqueeze(0)
                action = agent.act(x, deterministic=deterministic, generator=generator)[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(to_env_action(action, spec))
            total += float(reward)
            length += 1
            done = terminated or truncated
            writer.append_data(np.asarray(env.render()))
            frames += 1
    os.replace(tmp, output)
    print(json.dumps({"return": total, "length": length, "frames": frames, "fps": fps}))
