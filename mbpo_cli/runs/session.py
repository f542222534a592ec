"""A training session: one process training one run, with the engine's events going to the registry (kept through
an outage), the run's checkpoints and the reporter.

Data flows one way: config -> engine -> events -> registry, checkpoints and the display (a `Reporter`). Nothing here
knows about Typer; the CLI calls `start_run` / `resume_run` (:mod:`mbpo_cli.runs.start`,
:mod:`mbpo_cli.runs.resume`), which build the session.
"""

from __future__ import annotations

import signal
import time
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.events import Event, NoticeEvent, RolloutEvent, SeedFailedEvent, StepEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import RunState
from mbpo_cli.runs.checkpoint import capture, policy_payload, save_file
from mbpo_cli.runs.errors import error_line
from mbpo_cli.runs.layout import best_policy, checkpoint_file, checkpoints_dir, step_checkpoint, stored_path
from mbpo_cli.runs.outage import (
    OUTAGE_EXIT_CODE,
    CheckpointRow,
    ForgetCheckpoint,
    Heartbeat,
    RegistryWriter,
    Status,
    duration,
)
from mbpo_cli.runs.process import ForcedStop, StopSignals
from mbpo_cli.runs.registry import Registry, RegistryError, RegistryLost, RegistryUnavailable, RunInfo, RunStatus
from mbpo_cli.runs.reporting import Reporter
from mbpo_cli.runs.tensorboard import LiveTensorBoard, live_folder
from mbpo_cli.runs.wandb_tracking import LiveWandb

HEARTBEAT_SECONDS = 10.0


@dataclass
class Outcome:
    """How a session ended."""

    run: RunInfo
    status: RunStatus
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


def finished_outcome(registry: Registry, run: RunInfo) -> Outcome:
    """The outcome of a finished run that this process did not train (exit 0)."""
    evals = registry.metrics(run.id, metric_keys.EVAL_RETURN)
    return Outcome(run=run, status=RunStatus.FINISHED, exit_code=0, wall_seconds=run.wall_seconds,
                   env_steps_this_session=0, session_seconds=0.0,
                   last_metrics={metric_keys.EVAL_RETURN: evals[-1][2]} if evals else {},
                   best_eval=best_eval(registry, run.id))


class Session:
    """One run trained by this process: its events go to the registry (through `RegistryWriter`, which keeps them
    through an outage), its checkpoints and its reporter. A run is seed `member` of the `state` it trains with (0
    for a lone run; a pack's seeds each have their own session, all trained at once by `execute`)."""

    def __init__(self, registry: Registry, run: RunInfo, folder: Path, state: RunState, reporter: Reporter,
                 signals: StopSignals, outage_seconds: float, member: int = 0) -> None:
        self.registry = registry
        self.member = member
        self.signals = signals
        self.run = run
        self.folder = folder
        self.state = state
        self.reporter = reporter
        self.runs_dir = folder.parent
        self.checkpoint_dir = checkpoints_dir(folder)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.last_heartbeat = 0.0
        self.wall_offset = run.wall_seconds
        self.started = time.perf_counter()
        self.recorded = _recorded_epoch(registry, run.id)
        """The step and metrics of the run's last evaluation before this session (a resumed run's), or None."""
        self.last_metrics: dict[str, float] = {} if self.recorded is None else dict(self.recorded[1])
        self.best_eval = best_eval(registry, run.id)
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
        if isinstance(event, SeedFailedEvent):
            self.failed(NumericalError(event.message))
            self.close_live()
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
        path = best_policy(self.folder)
        with self.signals.busy_with("a checkpoint is being saved"):
            size, digest = save_file(policy_payload(self.state, eval_return, self.member), path)
            self.writer.write(CheckpointRow(self.state.env_step, stored_path(self.runs_dir, path), size, digest,
                                            "best"))

    def save_checkpoint(self, kind: str) -> None:
        """Write a full-state checkpoint, record it, and keep only the newest `keep_checkpoints`.

        An older file is deleted only once the new one's row is recorded or kept in the run folder (a later resume
        records it before it looks for checkpoints)."""
        step = self.state.env_step
        path = step_checkpoint(self.folder, step)
        with self.signals.busy_with("a checkpoint is being saved"):
            size, digest = save_file(capture(self.state, self.member), path)
            stored = stored_path(self.runs_dir, path)
            self.writer.write(CheckpointRow(step, stored, size, digest, kind))
            self.full_checkpoints = [c for c in self.full_checkpoints if c[1] != stored] + [(step, stored)]
            keep = self.state.config.train.keep_checkpoints
            old, self.full_checkpoints = self.full_checkpoints[:-keep], self.full_checkpoints[-keep:]
            for _, old_path in old:
                checkpoint_file(self.runs_dir, old_path).unlink(missing_ok=True)
                self.writer.write(ForgetCheckpoint(old_path))

    def begin(self) -> None:
        """Mark the run running and open what reports it (tracking, the display, TensorBoard)."""
        start_step = self.state.env_step
        self.writer.write(Status(RunStatus.RUNNING))
        if self.state.config.train.track:  # before the display: wandb may ask for a login
            config = self.state.member_config(self.state.place(self.member)).to_dict()
            self.tracker = LiveWandb(self.run, config, self.folder, self.reporter.message)
        self.reporter.start(self.run, self.state.member_config(self.state.place(self.member)), start_step)
        if self.recorded is not None:
            self.reporter.epoch(*self.recorded)
        if self.state.config.train.tensorboard:
            self.tensorboard = LiveTensorBoard(live_folder(self.folder), start_step, self.reporter.message)

    def failed(self, err: BaseException) -> None:
        """Training ended with `err`: mark the run failed with its message and close what reports it."""
        with suppress(RegistryError, RegistryLost):  # the failure itself may be the registry's
            self.writer.write(Status(RunStatus.FAILED, error_line(err)))
            self.heartbeat(self.state.env_step)
        if self.tracker is not None:
            self.tracker.close(failed=True)
            self.tracker = None
        self.reporter.stop()

    def close_live(self) -> None:
        """Close the live TensorBoard folder and the tracker (a no-op where closed already)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def finish(self, start_step: int) -> Outcome:
        """Training returned: checkpoint, set the final status (finished, or interrupted by a stop signal or a
        registry outage past its limit) and wait for the registry to record it."""
        signals = self.signals
        stopped = self.state.env_step < self.state.config.train.steps and (signals.requested() or self.writer.expired)
        self.save_checkpoint("periodic" if stopped else "final")
        status = RunStatus.INTERRUPTED if stopped else RunStatus.FINISHED
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
        self.writer.write(Status(RunStatus.INTERRUPTED, f"stopped by a second {name} during env step {at + 1}"))
        self.reporter.stop()
        self.reporter.message(f"{name} again: stopped at once during env step {at + 1:,}, without saving it; {where}")
        if not self.writer.flush(force=True):
            self.say_kept("was stopped")
        return self.outcome(RunStatus.INTERRUPTED, 128 + stop.signum, start_step, env_steps=kept)

    def outcome(self, status: RunStatus, exit_code: int, start_step: int, env_steps: int | None = None) -> Outcome:
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


def execute(sessions: list[Session]) -> list[Outcome]:
    """Train the runs of `sessions`, the seeds of one pack in its order (one session for a lone run), to the
    configured steps (or a stop signal, or a registry outage past its limit), checkpoint each, and set each one's
    final status; their outcomes in the same order. A seed whose numbers go non-finite is marked failed and leaves
    the pack (its last checkpoint kept); the others go on."""
    state, signals = sessions[0].state, sessions[0].signals
    start_step = state.env_step
    failed: dict[int, int] = {}
    """Index of each seed that left the pack -> the env step it failed at."""
    for session in sessions:
        session.begin()

    def on_event(event: Event) -> None:
        if isinstance(event, NoticeEvent):
            sessions[0].on_event(event)
            return
        if isinstance(event, SeedFailedEvent):
            failed[event.member] = event.env_step
        sessions[event.member].on_event(event)

    def should_stop() -> bool:
        asked = [s.should_stop() for i, s in enumerate(sessions) if i not in failed]  # every outage notice is due
        return any(asked)

    try:
        with signals.forceable():
            train(state, on_event, should_stop=should_stop)
    except ForcedStop as stop:
        return [session.outcome(RunStatus.FAILED, 1, start_step, failed[i]) if i in failed
                else session.stopped_mid_step(stop, start_step) for i, session in enumerate(sessions)]
    except BaseException as err:
        for i, session in enumerate(sessions):
            if i not in failed:
                session.failed(err)
        raise
    finally:
        for session in sessions:
            session.close_live()
    return [session.outcome(RunStatus.FAILED, 1, start_step, failed[i]) if i in failed
            else session.finish(start_step) for i, session in enumerate(sessions)]


def _recorded_epoch(registry: Registry, run_id: str) -> tuple[int, dict[str, float]] | None:
    """The env step and metrics of the run's last recorded evaluation, or None when it has none."""
    evals = registry.metrics(run_id, metric_keys.EVAL_RETURN)
    if not evals:
        return None
    step = evals[-1][0]
    return step, {key: value for at, key, value in registry.metrics(run_id) if at == step}


def best_eval(registry: Registry, run_id: str) -> float | None:
    """The run's best evaluation return so far, or None before its first evaluation."""
    values = [v for _, _, v in registry.metrics(run_id, metric_keys.EVAL_RETURN)]
    return max(values) if values else None
