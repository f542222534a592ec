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
from dataclasses import dataclass, field, replace
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
from mbpo_cli.runs.outage import (
    OUTAGE_EXIT_CODE,
    PENDING_FILE,
    CheckpointRow,
    ForgetCheckpoint,
    Heartbeat,
    PendingWrites,
    RegistryWriter,
    Status,
    duration,
    outage_limit,
)
from mbpo_cli.runs.registry import (
    CheckpointInfo,
    Registry,
    RegistryError,
    RegistryLost,
    RegistryUnavailable,
    RunInfo,
    sanitize_name,
)
from mbpo_cli.runs.tensorboard import LiveTensorBoard, live_folder, summary_writer
from mbpo_cli.runs.wandb_tracking import LiveWandb, wandb_module

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


class ForcedStop(KeyboardInterrupt):
    """A repeated stop signal that ended the main thread where it was (inside a step, say in a custom function that
    hangs): the session marks the run interrupted and keeps its last checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT/SIGTERM request a clean stop after the current step. Inside `forceable()` (training), a repeat stops
    the main thread at once by raising ForcedStop, unless it is `busy` with something that must not be cut short
    (saving a checkpoint); a repeat that does not stop says what the process is doing.

    The handler only records the first signal: output there could fail (a closed pipe) inside whatever the main
    thread was doing. The stop is announced by `requested()`, in the main thread; a repeat that does not stop at
    once is acknowledged by one raw write to stderr whose failure is ignored.
    """

    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter or SilentReporter()
        self.signum: int | None = None
        self.announced = False
        self.force = False
        """Whether a repeated signal raises ForcedStop (inside `forceable()`, when not `busy`)."""
        self.busy: str | None = None
        """What the main thread is doing that a repeated signal must not cut short, as the repeat's message says it
        ("a checkpoint is being saved"); None when nothing."""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        if self.force and self.busy is None:
            raise ForcedStop(signum)
        doing = f": {self.busy}" if self.busy is not None else ""
        with suppress(OSError):
            os.write(2, f"already stopping{doing}, please wait\n".encode())

    @contextmanager
    def forceable(self) -> Iterator[None]:
        """Let a repeated signal stop the main thread at once (ForcedStop) during the block."""
        self.force = True
        try:
            yield
        finally:
            self.force = False

    @contextmanager
    def busy_with(self, what: str) -> Iterator[None]:
        """Mark the main thread busy with `what` (see `busy`) for the block."""
        previous, self.busy = self.busy, what
        try:
            yield
        finally:
            self.busy = previous

    def requested(self) -> bool:
        """True once a stop signal arrived (the first call after it says so through the reporter)."""
        if self.signum is not None and not self.announced:
            self.announced = True
            name = signal.Signals(self.signum).name
            again = f" (another {name} stops at once, keeping the last checkpoint)" if self.force else ""
            self.reporter.message(f"{name}: finishing the current step and saving a checkpoint{again}")
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
    """One process training one run: engine events go to the registry (through `RegistryWriter`, which keeps them
    through an outage), checkpoints and the reporter."""

    def __init__(self, registry: Registry, run: RunInfo, folder: Path, state: RunState, reporter: Reporter,
                 signals: StopSignals, outage_seconds: float) -> None:
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
        self.tracker: LiveWandb | None = None
        self.writer = RegistryWriter(registry, run.id, folder, outage_seconds, reporter.message)
        self.full_checkpoints = [(c.step, c.path) for c in registry.checkpoints(run.id) if c.kind != "best"]
        """(env step, stored path) of the run's full checkpoints, oldest first, as the registry will hold them once
        the writer's kept writes are recorded."""
        self.outage_announced = False

    def wall_seconds(self) -> float:
        """Training wall time of the run across sessions."""
        return self.wall_offset + time.perf_counter() - self.started

    def heartbeat(self, env_steps: int) -> None:
        """Record the run's progress."""
        self.writer.write(Heartbeat(env_steps, self.wall_seconds()))

    def on_event(self, event: Event) -> None:
        """The engine's callback."""
        if isinstance(event, StepEvent):
            self.reporter.step(event.env_step, event.episode_return)
            now = time.monotonic()
            if now - self.last_heartbeat > HEARTBEAT_SECONDS:
                self.last_heartbeat = now
                self.heartbeat(event.env_step)
            else:
                self.writer.flush()  # writes kept through an outage go as soon as a try is due
            return
        if isinstance(event, NoticeEvent):
            self.reporter.message(event.text)
            return
        if isinstance(event, RolloutEvent):
            self.writer.log_metrics([(event.env_step, k, v) for k, v in event.metrics.items()])
            return
        metrics = dict(event.metrics)
        metrics[metric_keys.WALL_SECONDS] = self.wall_seconds()
        self.writer.log_metrics([(event.env_step, k, v) for k, v in metrics.items()])
        self.writer.write(Heartbeat(event.env_step, metrics[metric_keys.WALL_SECONDS]))
        if self.tensorboard is not None:
            self.tensorboard.write(event.env_step, metrics)
        if self.tracker is not None:
            self.tracker.write(event.env_step, metrics)
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

    def should_stop(self) -> bool:
        """The engine's test before each step: a stop signal, or a registry outage that lasted its limit."""
        if self.signals.requested():
            return True
        if self.writer.expired and not self.outage_announced:
            self.outage_announced = True
            self.reporter.message(f"the registry has not answered for {duration(self.writer.limit)}: stopping after "
                                  "this step with a checkpoint")
        return self.writer.expired

    def save_best(self, eval_return: float) -> None:
        """Write the best-evaluation policy (its acting network only), in place of the previous one."""
        path = self.checkpoint_dir / BEST_POLICY
        with self.signals.busy_with("a checkpoint is being saved"):
            size, digest = save_file(policy_payload(self.state, eval_return), path)
            self.writer.write(CheckpointRow(self.state.env_step, stored_path(self.runs_dir, path), size, digest,
                                            "best"))

    def save_checkpoint(self, kind: str) -> None:
        """Write a full-state checkpoint, record it, and keep only the newest `keep_checkpoints`.

        An older file is deleted only once the new one's row is recorded or kept in the run folder (a later resume
        records it before it looks for checkpoints)."""
        step = self.state.env_step
        path = self.checkpoint_dir / f"step-{step:010d}.pt"
        with self.signals.busy_with("a checkpoint is being saved"):
            size, digest = save_file(capture(self.state), path)
            stored = stored_path(self.runs_dir, path)
            self.writer.write(CheckpointRow(step, stored, size, digest, kind))
            self.full_checkpoints = [c for c in self.full_checkpoints if c[1] != stored] + [(step, stored)]
            keep = self.state.config.train.keep_checkpoints
            old, self.full_checkpoints = self.full_checkpoints[:-keep], self.full_checkpoints[-keep:]
            for _, old_path in old:
                checkpoint_file(self.runs_dir, old_path).unlink(missing_ok=True)
                self.writer.write(ForgetCheckpoint(old_path))

    def execute(self) -> Outcome:
        """Train to the configured steps (or a stop signal, or a registry outage past its limit), checkpoint, and
        set the final status."""
        start_step = self.state.env_step
        signals = self.signals
        self.writer.write(Status("running"))
        if self.state.config.train.track:  # before the display: wandb may ask for a login
            self.tracker = LiveWandb(self.run, self.state.config.to_dict(), self.folder, self.reporter.message)
        self.reporter.start(self.run, self.state.config, start_step)
        if self.recorded is not None:
            self.reporter.epoch(*self.recorded)
        if self.state.config.train.tensorboard:
            self.tensorboard = LiveTensorBoard(live_folder(self.folder), start_step, self.reporter.message)
        try:
            with signals.forceable():
                train(self.state, self.on_event, should_stop=self.should_stop)
        except ForcedStop as stop:
            return self.stopped_mid_step(stop, start_step)
        except BaseException as err:
            with suppress(RegistryError, RegistryLost):  # the failure itself may be the registry's
                self.writer.write(Status("failed", _one_line(err)))
                self.heartbeat(self.state.env_step)
            if self.tracker is not None:
                self.tracker.close(failed=True)
            self.reporter.stop()
            raise
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
            if self.tracker is not None:
                self.tracker.close()
        stopped = self.state.env_step < self.state.config.train.steps and (signals.requested() or self.writer.expired)
        self.save_checkpoint("periodic" if stopped else "final")
        status = "interrupted" if stopped else "finished"
        with signals.busy_with("the run's end is being recorded"):
            self.heartbeat(self.state.env_step)
            self.writer.write(Status(status))
        recorded = self.wait_for_registry()
        self.reporter.stop()
        code = 0
        if stopped or not recorded:  # by a stop signal, else by the registry outage
            code = signals.exit_code if signals.requested() else OUTAGE_EXIT_CODE
        return self.outcome(status, code, start_step)

    def wait_for_registry(self) -> bool:
        """At the end, give the registry the rest of the outage limit to record the kept writes (a stop signal ends
        the wait); whether it did. Writes it did not record stay in the run folder, as the message says."""
        if not self.writer.pending.writes:
            return True
        left = self.writer.limit - (time.monotonic() - (self.writer.down_since or time.monotonic()))
        if self.signals.signum is None and not self.writer.expired:
            self.reporter.message(f"waiting up to {duration(left)} for the registry to record the run's last "
                                  f"writes (Ctrl-C stops waiting; they stay in {self.writer.pending.file})")
        recorded = self.writer.drain(stop=lambda: self.signals.signum is not None)
        if not recorded:
            self.say_kept(f"stopped at env step {self.state.env_step:,} with its checkpoint")
        return recorded

    def say_kept(self, how: str) -> None:
        """The one line on the writes left in the run folder when the session ends without the registry."""
        self.reporter.message(
            f"registry unreachable ({self.writer.error}): run {self.run.id} {how}; {len(self.writer.pending.writes)} "
            f"registry writes are kept in {self.writer.pending.file}, which `mbpo resume {self.run.id}` records once "
            "the registry answers")

    def stopped_mid_step(self, stop: ForcedStop, start_step: int) -> Outcome:
        """A repeated stop signal ended training inside a step: nothing of the half-done step is saved; the run is
        marked interrupted at its last checkpoint, which a resume continues from."""
        name = signal.Signals(stop.signum).name
        at = self.state.env_step
        kept = self.full_checkpoints[-1][0] if self.full_checkpoints else self.state.env_step
        if self.full_checkpoints:
            self.heartbeat(kept)
            where = f"it continues from its checkpoint at env step {kept:,}"
        else:
            where = "it has no checkpoint yet, so it cannot be resumed"
        self.writer.write(Status("interrupted", f"stopped by a second {name} during env step {at + 1}"))
        self.reporter.stop()
        self.reporter.message(f"{name} again: stopped at once during env step {at + 1:,}, without saving it; {where}")
        if not self.writer.flush(force=True):
            self.say_kept("was stopped")
        return self.outcome("interrupted", 128 + stop.signum, start_step, env_steps=kept)

    def outcome(self, status: str, exit_code: int, start_step: int, env_steps: int | None = None) -> Outcome:
        """How the session ended (the run as the registry holds it, or as it will once the kept writes are in; its
        env steps those of its last checkpoint, by default the state's)."""
        steps = self.state.env_step if env_steps is None else env_steps
        run = replace(self.run, status=status, env_steps=steps, wall_seconds=self.wall_seconds())
        if not self.writer.pending.writes:
            with suppress(RegistryUnavailable):  # everything is recorded: a registry gone since changes nothing
                run = self.registry.get_run(self.run.id)
        return Outcome(
            run=run,
            status=status,
            exit_code=exit_code,
            wall_seconds=self.wall_seconds(),
            env_steps_this_session=self.state.env_step - start_step,
            session_seconds=time.perf_counter() - self.started,
            last_metrics=self.last_metrics,
            best_eval=self.best_eval,
        )


def _recorded_epoch(registry: Registry, run_id: str) -> tuple[int, dict[str, float]] | None:
    """The env step and metrics of the run's last recorded evaluation, or None when it has none."""
    evals = registry.metrics(run_id, metric_keys.EVAL_RETURN)
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
    outage_seconds = outage_limit()
    with StopSignals(reporter) as signals:
        return _start_run(config, meta, registry, runs_dir, reporter, signals, outage_seconds)


def _start_run(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path, reporter: Reporter,
               signals: StopSignals, outage_seconds: float) -> Outcome:
    if config.train.tensorboard:
        summary_writer("train.tensorboard")  # a missing package fails here, before the run is registered
    if config.train.track:
        wandb_module("train.track")
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
        return Session(registry, run, folder, state, reporter, signals, outage_seconds).execute()


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


def record_pending(registry: Registry, run: RunInfo, runs_dir: Path, reporter: Reporter) -> RunInfo:
    """Record the registry writes that a session of the run kept through an outage (its folder's pending file),
    under the run's lock; the run as the registry then holds it."""
    folder = run_dir(runs_dir, run.id)
    if not (folder / PENDING_FILE).is_file():
        return run
    with run_lock(folder):
        pending = PendingWrites(folder / PENDING_FILE)
        count = len(pending.writes)
        pending.replay(registry, run.id)
    reporter.message(f"recorded the {count} registry writes that run {run.id} kept during a registry outage")
    return registry.get_run(run.id)


def finished_outcome(registry: Registry, run: RunInfo) -> Outcome:
    """The outcome of a finished run that this process did not train (exit 0)."""
    evals = registry.metrics(run.id, metric_keys.EVAL_RETURN)
    return Outcome(run=run, status="finished", exit_code=0, wall_seconds=run.wall_seconds,
                   env_steps_this_session=0, session_seconds=0.0,
                   last_metrics={metric_keys.EVAL_RETURN: evals[-1][2]} if evals else {},
                   best_eval=_best_eval(registry, run.id))


CONTINUED_AS_ASKED = ("train.steps", "train.device")
"""Config keys whose new value `--if-exists resume` takes for an existing run: more steps extend it, and a device
is this machine's."""


def check_same_run(config: Config, run: RunInfo) -> None:
    """RunError unless `config` asks for the run as it is recorded, but for more steps or another device (see
    CONTINUED_AS_ASKED): a requeued job's command that changed would otherwise be ignored."""
    recorded = build_config(run.config, f"run {run.id}")
    changed = config_diff(recorded.to_dict(), config.to_dict())
    other = {k: v for k, v in changed.items() if k not in CONTINUED_AS_ASKED}
    if other:
        raise RunError(f"run {run.name} exists with another config ({_changes(other)}); --if-exists resume "
                       "continues a run as recorded: ask for it unchanged, or use another --name")
    if config.train.steps < recorded.train.steps:
        raise RunError(f"run {run.name} exists with train.steps {recorded.train.steps}, more than the "
                       f"{config.train.steps} asked for; --if-exists resume may extend a run, not shorten it")


def _changes(changed: dict[str, tuple[Any, Any]], shown: int = 3) -> str:
    """`key: old -> new` for the first `shown` differences (values cut to 30 characters), then how many more."""
    cut = [f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(changed.items())[:shown]]
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    return ", ".join(cut) + more


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:29] + "…"


def start_or_resume(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path,
                    reporter: Reporter) -> Outcome:
    """Train the run named `meta.name`, or continue it if it exists: what a retried or requeued job runs.

    An existing run continues from its newest good checkpoint with its recorded config, extended when `config`
    asks for more steps (any other difference is refused: see `check_same_run`); one that stopped before its first
    checkpoint is discarded and trained anew; a finished one asked for no more steps is left as it is (its
    outcome, exit 0). Registry writes that the run kept through an outage are recorded first.
    """
    assert meta.name is not None
    run = run_named(registry, sanitize_name(meta.name))
    if run is not None:
        run = record_pending(registry, run, runs_dir, reporter)
    if run is not None and (run.status == "finished" or has_full_checkpoint(registry, run.id)
                            or is_locked(run_dir(runs_dir, run.id))):
        check_same_run(config, run)
        steps = config.train.steps if config.train.steps > run.target_steps else None
        if run.status == "finished" and steps is None:
            reporter.message(f"run {run.id} ({run.name}) already finished at env step {run.env_steps:,}")
            return finished_outcome(registry, run)
        device = config.train.device if config.train.device != run.config["train"]["device"] else None
        return resume_run(registry, runs_dir, run.id, reporter, steps=steps, device=device)
    if run is not None:
        discard_run(registry, runs_dir, run)
    return start_run(config, meta, registry, runs_dir, reporter)


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
    device: str | None = None, force: bool = False, track: bool | None = None,
) -> Outcome:
    """Continue run `ref` from its newest good checkpoint, in the same run id and registry rows.

    A stop signal from the start on stops the run once it is restored (it is saved again, unchanged). `track`
    turns W&B tracking (`train.track`) on or off from this session on.
    """
    reporter = SafeReporter(reporter)
    outage_seconds = outage_limit()
    with StopSignals(reporter) as signals:
        return _resume_run(registry, runs_dir, ref, reporter, signals, outage_seconds, steps=steps, device=device,
                           force=force, track=track)


def _edited_config(run: RunInfo, recorded: Config, config_file: Path, reporter: Reporter, force: bool) -> Config:
    """The run's config: as recorded, or as its folder's config.yaml was edited since (only with `force`)."""
    if not config_file.exists():
        return recorded
    on_disk = build_config(read_yaml(config_file), str(config_file))
    changed = config_diff(recorded.to_dict(), on_disk.to_dict())
    if changed and not force:
        keys = ", ".join(sorted(changed))
        raise RunError(f"run {run.id}: config.yaml changed since the run started ({keys}); use --force to accept")
    if not changed:
        return recorded
    what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
    reporter.message(f"config changed (--force): {what}")
    return on_disk


def _resume_run(
    registry: Registry, runs_dir: Path, ref: str, reporter: Reporter, signals: StopSignals, outage_seconds: float,
    *, steps: int | None, device: str | None, force: bool, track: bool | None,
) -> Outcome:
    run = registry.get_run(ref)
    folder = run_dir(runs_dir, run.id)
    if not folder.is_dir():
        raise RunError(f"run {run.id} cannot be resumed: its folder {folder} is gone (with its checkpoints)")
    was_finished = run.status == "finished"
    run = record_pending(registry, run, runs_dir, reporter)
    recorded = build_config(run.config, f"run {run.id}")
    if run.status == "finished" and (steps is None or steps <= run.env_steps):
        if not was_finished:
            return finished_outcome(registry, run)  # it finished during a registry outage: now recorded
        raise RunError(
            f"run {run.id} is finished at {run.env_steps} steps; pass --steps N with N > {run.env_steps} to extend it"
        )
    if is_locked(folder):
        raise RunError(f"run {run.id} is still running in another process")
    config_file = folder / "config.yaml"
    recorded = _edited_config(run, recorded, config_file, reporter, force)
    overrides: dict[str, Any] = {}
    if steps is not None:
        overrides["steps"] = steps
    if device is not None:
        overrides["device"] = device
    if track is not None:
        overrides["track"] = track
    config = build_config({**recorded.to_dict(), "train": {**recorded.to_dict()["train"], **overrides}}, "resume")
    if config.train.tensorboard:
        summary_writer("train.tensorboard")  # a missing package fails here, before anything is restored
    if config.train.track:
        wandb_module("train.track")
    with run_lock(folder):
        info, payload = latest_good_checkpoint(registry, run, reporter, runs_dir)
        if steps is not None and steps < info.step:
            raise RunError(f"run {run.id}: --steps {steps} is below its checkpoint at env step {info.step}")
        saved = build_config(payload["config"], info.path).to_dict()
        drift = {k: v for k, v in config_diff(saved, config.to_dict()).items()
                 if k not in ("train.steps", "train.device", "train.track")}
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
        outcome = Session(registry, run, folder, state, reporter, signals, outage_seconds).execute()
        outcome.exact_resume = exact
        return outcome
