"""Runs a training session: registry rows, run folder, checkpoints, signals, and the engine between.

Data flows one way: config -> engine -> events -> registry, checkpoints and the display (a
`Reporter`). Nothing here knows about Typer; the CLI calls `start_run` / `resume_run`.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import yaml

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.load import build_config, config_diff, read_yaml
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.events import Event, NoticeEvent, RolloutEvent, StepEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import RunState, build_run, resolve_device
from mbpo_cli.runs.checkpoint import (
    CheckpointError,
    capture,
    check_full,
    load_file,
    policy_payload,
    restore,
    save_file,
)
from mbpo_cli.runs.registry import CheckpointInfo, Registry, RegistryError, RegistryLost, RunInfo, sanitize_name
from mbpo_cli.runs.tensorboard import LiveTensorBoard, live_folder, summary_writer

HEARTBEAT_SECONDS = 10.0
BEST_POLICY = "best-policy.pt"


class RunError(RuntimeError):
    """A refusal or problem the user can act on (one line; the CLI exits 2)."""


class Reporter(Protocol):
    """Where progress goes (the Rich display, or nothing in --json mode)."""

    def start(self, run: RunInfo, config: Config, from_step: int) -> None: ...
    def step(self, env_step: int, episode_return: float | None) -> None: ...
    def epoch(self, env_step: int, metrics: dict[str, float]) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class SilentReporter:
    """No progress display (machine-readable output modes); messages and warnings go to stderr, one line each."""

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """Nothing."""

    def step(self, env_step: int, episode_return: float | None) -> None:
        """Nothing."""

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """Nothing."""

    def message(self, text: str) -> None:
        """A line on stderr (stdout stays machine-readable)."""
        print(text, file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Nothing."""


@dataclass
class Outcome:
    """How a session ended."""

    run: RunInfo
    status: str
    """finished, interrupted or failed."""
    exit_code: int
    wall_seconds: float
    """Training wall time of the run, all sessions."""
    env_steps_this_session: int
    session_seconds: float
    """Wall time of this session's training (set-up excluded): what this session's steps/s divides by."""
    last_metrics: dict[str, float] = field(default_factory=dict)
    best_eval: float | None = None
    exact_resume: bool = True


def run_dir(runs_dir: Path, run_id: str) -> Path:
    """The folder of a run's artifacts."""
    return runs_dir / run_id


def stored_path(runs_dir: Path, path: Path) -> str:
    """How the registry records a checkpoint file: relative to the runs directory, so that a moved runs
    directory, or a relative `--runs-dir` used from another directory, still finds it."""
    return path.relative_to(runs_dir).as_posix()


def checkpoint_file(runs_dir: Path, stored: str) -> Path:
    """The file a registry row names: relative to the runs directory, or (rows of older versions, which stored
    paths as given) absolute or relative to the directory they ran in."""
    path = Path(stored)
    if path.is_absolute():
        return path
    inside = runs_dir / path
    return inside if inside.exists() or not path.exists() else path


def git_commit() -> str | None:
    """The current commit of the source checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# Process lock and signals
# ---------------------------------------------------------------------------------------------


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the run's lock file for the session; RunError if another live process holds it."""
    handle = open(folder / "lock", "a")  # noqa: SIM115 - held for the whole session
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunError(f"run {folder.name} is being trained by another live process") from None
    try:
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def is_locked(folder: Path) -> bool:
    """True while a live process holds the run's lock (read-only access is enough to ask)."""
    path = folder / "lock"
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the lock test
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def live_status(run: RunInfo, folder: Path) -> str:
    """The status to show a user. A `running` run whose lock no live process holds is `interrupted (stale)` at
    once (its lock file proves it ran on this machine); without a lock file here, its heartbeat decides."""
    if run.status != "running":
        return run.status
    if is_locked(folder):
        return "running"
    if (folder / "lock").exists():
        return "interrupted (stale)"
    return run.display_status


class StopSignals:
    """SIGINT/SIGTERM request a clean stop after the current step; repeats during the save are ignored.

    The handler only records the signal: output there could fail (a closed pipe) inside whatever the main
    thread was doing, such as writing the checkpoint. The stop is announced by `requested()`, in the main
    thread; a repeat is acknowledged by one raw write to stderr whose failure is ignored.
    """

    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter or SilentReporter()
        self.signum: int | None = None
        self.announced = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        with suppress(OSError):
            os.write(2, b"already stopping: the checkpoint is being saved, please wait\n")

    def requested(self) -> bool:
        """True once a stop signal arrived (the first call after it says so through the reporter)."""
        if self.signum is not None and not self.announced:
            self.announced = True
            self.reporter.message(f"{signal.Signals(self.signum).name}: finishing the current step and saving a "
                                  "checkpoint")
        return self.signum is not None

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (128 + signal number)."""
        return 128 + (self.signum or signal.SIGINT)


class SafeReporter:
    """A reporter whose output may fail (a closed pipe, a full disk) without failing the run: the first
    OSError ends the display, and training, checkpoints and the registry carry on."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter: Reporter | None = reporter

    def _call(self, name: str, *args: Any) -> None:
        if self.reporter is None:
            return
        try:
            getattr(self.reporter, name)(*args)
        except OSError:
            self.reporter = None

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """The display's start, if it can still write."""
        self._call("start", run, config, from_step)

    def step(self, env_step: int, episode_return: float | None) -> None:
        """The display's step, if it can still write."""
        self._call("step", env_step, episode_return)

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """The display's epoch, if it can still write."""
        self._call("epoch", env_step, metrics)

    def message(self, text: str) -> None:
        """The display's message, if it can still write."""
        self._call("message", text)

    def stop(self) -> None:
        """The display's stop, if it can still write."""
        self._call("stop")


# ---------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------


class Session:
    """One process training one run: engine events go to the registry, checkpoints and the reporter."""

    def __init__(self, registry: Registry, run: RunInfo, folder: Path, state: RunState, reporter: Reporter,
                 signals: StopSignals) -> None:
        self.registry = registry
        self.signals = signals
        self.run = run
        self.folder = folder
        self.state = state
        self.reporter = reporter
        self.runs_dir = folder.parent
        self.checkpoint_dir = folder / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.last_heartbeat = 0.0
        self.wall_offset = run.wall_seconds
        self.started = time.perf_counter()
        self.recorded = _recorded_epoch(registry, run.id)
        """The step and metrics of the run's last evaluation before this session (a resumed run's), or None."""
        self.last_metrics: dict[str, float] = {} if self.recorded is None else dict(self.recorded[1])
        self.best_eval = _best_eval(registry, run.id)
        self.tensorboard: LiveTensorBoard | None = None

    def wall_seconds(self) -> float:
        """Training wall time of the run across sessions."""
        return self.wall_offset + time.perf_counter() - self.started

    def on_event(self, event: Event) -> None:
        """The engine's callback."""
        if isinstance(event, StepEvent):
            self.reporter.step(event.env_step, event.episode_return)
            now = time.monotonic()
            if now - self.last_heartbeat > HEARTBEAT_SECONDS:
                self.last_heartbeat = now
                self.registry.heartbeat(self.run.id, env_steps=event.env_step, wall_seconds=self.wall_seconds())
            return
        if isinstance(event, NoticeEvent):
            self.reporter.message(event.text)
            return
        if isinstance(event, RolloutEvent):
            self.registry.log_metrics(self.run.id, [(event.env_step, k, v) for k, v in event.metrics.items()])
            return
        metrics = dict(event.metrics)
        metrics[metric_keys.WALL_SECONDS] = self.wall_seconds()
        self.registry.log_metrics(self.run.id, [(event.env_step, k, v) for k, v in metrics.items()])
        self.registry.heartbeat(self.run.id, env_steps=event.env_step, wall_seconds=metrics[metric_keys.WALL_SECONDS])
        if self.tensorboard is not None:
            self.tensorboard.write(event.env_step, metrics)
        self.last_metrics = metrics
        self.reporter.epoch(event.env_step, metrics)
        ret = metrics.get(metric_keys.EVAL_RETURN)
        if ret is not None and (self.best_eval is None or ret > self.best_eval):
            self.best_eval = ret
            self.save_best(ret)
        epochs = event.env_step // self.state.config.train.epoch_length
        at_end = event.env_step >= self.state.config.train.steps
        if not at_end and epochs % self.state.config.train.checkpoint_every == 0:
            self.save_checkpoint("periodic")

    def save_best(self, eval_return: float) -> None:
        """Write the best-evaluation policy (its acting network only)."""
        path = self.checkpoint_dir / BEST_POLICY
        size, digest = save_file(policy_payload(self.state, eval_return), path)
        for row in self.registry.checkpoints(self.run.id):
            if row.kind == "best":  # one best policy (rows of older versions may name it another way)
                self.registry.remove_checkpoint(self.run.id, row.path)
        self.registry.add_checkpoint(self.run.id, step=self.state.env_step, path=stored_path(self.runs_dir, path),
                                     bytes=size, sha256=digest, kind="best")

    def save_checkpoint(self, kind: str) -> None:
        """Write a full-state checkpoint, record it, and keep only the newest `keep_checkpoints`."""
        step = self.state.env_step
        path = self.checkpoint_dir / f"step-{step:010d}.pt"
        size, digest = save_file(capture(self.state), path)
        stored = stored_path(self.runs_dir, path)
        self.registry.remove_checkpoint(self.run.id, stored)
        self.registry.add_checkpoint(self.run.id, step=step, path=stored, bytes=size, sha256=digest, kind=kind)
        full = [c for c in self.registry.checkpoints(self.run.id) if c.kind != "best"]
        for old in full[: -self.state.config.train.keep_checkpoints]:
            checkpoint_file(self.runs_dir, old.path).unlink(missing_ok=True)
            self.registry.remove_checkpoint(self.run.id, old.path)

    def execute(self) -> Outcome:
        """Train to the configured steps (or a stop signal), checkpoint, and set the final status."""
        start_step = self.state.env_step
        signals = self.signals
        self.registry.set_status(self.run.id, "running")
        self.reporter.start(self.run, self.state.config, start_step)
        if self.recorded is not None:
            self.reporter.epoch(*self.recorded)
        if self.state.config.train.tensorboard:
            self.tensorboard = LiveTensorBoard(live_folder(self.folder), start_step, self.reporter.message)
        try:
            train(self.state, self.on_event, should_stop=signals.requested)
        except BaseException as err:
            with suppress(RegistryError, RegistryLost):  # the failure itself may be the registry's
                self.registry.set_status(self.run.id, "failed", error=_one_line(err))
                self.registry.heartbeat(self.run.id, env_steps=self.state.env_step, wall_seconds=self.wall_seconds())
            self.reporter.stop()
            raise
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
        stopped = signals.requested() and self.state.env_step < self.state.config.train.steps
        self.save_checkpoint("periodic" if stopped else "final")
        self.registry.heartbeat(self.run.id, env_steps=self.state.env_step, wall_seconds=self.wall_seconds())
        status = "interrupted" if stopped else "finished"
        self.registry.set_status(self.run.id, status)
        self.reporter.stop()
        code = signals.exit_code if stopped else 0
        return Outcome(
            run=self.registry.get_run(self.run.id),
            status=status,
            exit_code=code,
            wall_seconds=self.wall_seconds(),
            env_steps_this_session=self.state.env_step - start_step,
            session_seconds=time.perf_counter() - self.started,
            last_metrics=self.last_metrics,
            best_eval=self.best_eval,
        )


def _recorded_epoch(registry: Registry, run_id: str) -> tuple[int, dict[str, float]] | None:
    """The env step and metrics of the run's last recorded evaluation, or None when it has none."""
    evals = registry.metrics(run_id, "eval_return")
    if not evals:
        return None
    step = evals[-1][0]
    return step, {key: value for at, key, value in registry.metrics(run_id) if at == step}


def _best_eval(registry: Registry, run_id: str) -> float | None:
    values = [v for _, _, v in registry.metrics(run_id, metric_keys.EVAL_RETURN)]
    return max(values) if values else None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    kind = type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return "KeyboardInterrupt"
    return f"{kind}: {text[0]}" if text else kind


# ---------------------------------------------------------------------------------------------
# Entry points for the CLI
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunMeta:
    """How a run was asked for (recorded in the registry)."""

    preset: str | None
    name: str | None
    command: str
    group: str | None = None
    variant: str | None = None


def command_line() -> str:
    """The exact command line of this process."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def start_run(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path, reporter: Reporter) -> Outcome:
    """Register a new run, create its folder and train it.

    Stop signals are caught from before the run is registered: one that arrives while the run is being set up
    stops it after set-up, with a checkpoint at env step 0, marked interrupted.
    """
    reporter = SafeReporter(reporter)
    with StopSignals(reporter) as signals:
        return _start_run(config, meta, registry, runs_dir, reporter, signals)


def _start_run(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path, reporter: Reporter,
               signals: StopSignals) -> Outcome:
    if config.train.tensorboard:
        summary_writer("train.tensorboard")  # a missing package fails here, before the run is registered
    device = resolve_device(config.train.device)
    run = registry.create_run(
        name=meta.name, preset=meta.preset, env_id=config.env.id, algo=config.label, seed=config.train.seed,
        config=config.to_dict(), device=str(device), command=meta.command, target_steps=config.train.steps,
        group=meta.group, variant=meta.variant, git_commit=git_commit(),
    )
    folder = run_dir(runs_dir, run.id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        (folder / "command.txt").write_text(meta.command + "\n")
    except OSError as err:
        registry.set_status(run.id, "failed", error=f"cannot write run folder: {err.strerror}")
        raise RunError(f"cannot write run folder {folder}: {err.strerror}") from None
    with run_lock(folder):
        try:
            state = build_run(config, device)
        except BaseException as err:
            registry.set_status(run.id, "failed", error=_one_line(err))
            raise
        return Session(registry, run, folder, state, reporter, signals).execute()


def has_full_checkpoint(registry: Registry, run_id: str) -> bool:
    """Whether the run has a checkpoint to resume from (a `best` one holds only the policy)."""
    return any(c.kind != "best" for c in registry.checkpoints(run_id))


def discard_run(registry: Registry, runs_dir: Path, run: RunInfo) -> None:
    """Delete a run that stopped before its first checkpoint (nothing to resume from): its rows and its folder."""
    registry.delete_run(run.id)
    shutil.rmtree(run_dir(runs_dir, run.id), ignore_errors=True)


def run_named(registry: Registry, name: str) -> RunInfo | None:
    """The run whose name is exactly `name` (not an id or an id prefix), or None."""
    try:
        run = registry.get_run(name)
    except RegistryError:
        return None
    return run if run.name == name else None


def start_or_resume(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path,
                    reporter: Reporter) -> Outcome:
    """Train the run named `meta.name`, or continue it if it exists: what a retried or requeued job runs.

    An existing run continues from its newest good checkpoint with its recorded config; one that stopped before
    its first checkpoint is discarded and trained anew; a finished one is left as it is (its outcome, exit 0).
    """
    assert meta.name is not None
    run = run_named(registry, sanitize_name(meta.name))
    if run is not None and run.status == "finished":
        reporter.message(f"run {run.id} ({run.name}) already finished at env step {run.env_steps:,}")
        evals = registry.metrics(run.id, metric_keys.EVAL_RETURN)
        return Outcome(run=run, status="finished", exit_code=0, wall_seconds=run.wall_seconds,
                       env_steps_this_session=0, session_seconds=0.0,
                       last_metrics={metric_keys.EVAL_RETURN: evals[-1][2]} if evals else {},
                       best_eval=_best_eval(registry, run.id))
    if run is not None and not is_locked(run_dir(runs_dir, run.id)) and not has_full_checkpoint(registry, run.id):
        discard_run(registry, runs_dir, run)
        run = None
    if run is None:
        return start_run(config, meta, registry, runs_dir, reporter)
    return resume_run(registry, runs_dir, run.id, reporter)


def latest_good_checkpoint(
    registry: Registry, run: RunInfo, reporter: Reporter, runs_dir: Path
) -> tuple[CheckpointInfo, dict[str, Any]]:
    """The newest full checkpoint that verifies and loads; older ones are tried with a warning each.

    Unusable checkpoints newer than the one returned are forgotten and their files deleted: the run
    continues from an earlier step and rewrites them, and they must not count towards `keep_checkpoints`.
    """
    full = [c for c in registry.checkpoints(run.id) if c.kind != "best"]
    rejected: list[CheckpointInfo] = []
    for info in reversed(full):
        try:
            file = checkpoint_file(runs_dir, info.path)
            payload = load_file(file, info.sha256)
            check_full(payload, str(file))
        except CheckpointError as err:
            reporter.message(f"warning: {err}; trying the previous checkpoint")
            rejected.append(info)
            continue
        for bad in rejected:
            with suppress(OSError):
                checkpoint_file(runs_dir, bad.path).unlink(missing_ok=True)
            registry.remove_checkpoint(run.id, bad.path)
        return info, payload
    raise RunError(f"run {run.id} has no usable checkpoint to resume from")


def resume_run(
    registry: Registry, runs_dir: Path, ref: str, reporter: Reporter, *, steps: int | None = None,
    device: str | None = None, force: bool = False,
) -> Outcome:
    """Continue run `ref` from its newest good checkpoint, in the same run id and registry rows.

    A stop signal from the start on stops the run once it is restored (it is saved again, unchanged).
    """
    reporter = SafeReporter(reporter)
    with StopSignals(reporter) as signals:
        return _resume_run(registry, runs_dir, ref, reporter, signals, steps=steps, device=device, force=force)


def _resume_run(
    registry: Registry, runs_dir: Path, ref: str, reporter: Reporter, signals: StopSignals, *, steps: int | None,
    device: str | None, force: bool,
) -> Outcome:
    run = registry.get_run(ref)
    folder = run_dir(runs_dir, run.id)
    if not folder.is_dir():
        raise RunError(f"run {run.id} cannot be resumed: its folder {folder} is gone (with its checkpoints)")
    recorded = build_config(run.config, f"run {run.id}")
    if run.status == "finished" and (steps is None or steps <= run.env_steps):
        raise RunError(
            f"run {run.id} is finished at {run.env_steps} steps; pass --steps N with N > {run.env_steps} to extend it"
        )
    if is_locked(folder):
        raise RunError(f"run {run.id} is still running in another process")
    config_file = folder / "config.yaml"
    if config_file.exists():
        on_disk = build_config(read_yaml(config_file), str(config_file))
        changed = config_diff(recorded.to_dict(), on_disk.to_dict())
        if changed and not force:
            keys = ", ".join(sorted(changed))
            raise RunError(f"run {run.id}: config.yaml changed since the run started ({keys}); use --force to accept")
        if changed:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            reporter.message(f"config changed (--force): {what}")
            recorded = on_disk
    overrides: dict[str, Any] = {}
    if steps is not None:
        overrides["steps"] = steps
    if device is not None:
        overrides["device"] = device
    config = build_config({**recorded.to_dict(), "train": {**recorded.to_dict()["train"], **overrides}}, "resume")
    if config.train.tensorboard:
        summary_writer("train.tensorboard")  # a missing package fails here, before anything is restored
    with run_lock(folder):
        info, payload = latest_good_checkpoint(registry, run, reporter, runs_dir)
        if steps is not None and steps < info.step:
            raise RunError(f"run {run.id}: --steps {steps} is below its checkpoint at env step {info.step}")
        saved = build_config(payload["config"], info.path).to_dict()
        drift = {k: v for k, v in config_diff(saved, config.to_dict()).items()
                 if k not in ("train.steps", "train.device")}
        if drift and not force:
            raise RunError(f"run {run.id}: the config differs from its checkpoint ({', '.join(drift)}); use --force")
        state = build_run(config, resolve_device(config.train.device))
        try:
            exact = restore(state, payload)
        except CheckpointError as err:
            raise RunError(str(err)) from None
        registry.delete_metrics_after(run.id, state.env_step)
        if config.to_dict() != run.config:
            registry.update_config(run.id, config.to_dict(), target_steps=config.train.steps)
            config_file.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if not exact:
            reporter.message("resuming on another device type: the continuation is not bitwise exact")
        reporter.message(f"resuming run {run.id} from env step {state.env_step} ({Path(info.path).name})")
        outcome = Session(registry, run, folder, state, reporter, signals).execute()
        outcome.exact_resume = exact
        return outcome
