"""The process side of a training session: the run's lock file (one live process trains a run), whether a run is
alive, and the stop signals (SIGINT/SIGTERM: a clean stop after the current step; a repeat: at once)."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import LOCK_FILE
from mbpo_cli.runs.registry import RunInfo, RunStatus, ShownStatus
from mbpo_cli.runs.reporting import Reporter, SilentReporter


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the run's lock file for the session; RunError if another live process holds it."""
    handle = open(folder / LOCK_FILE, "a")  # noqa: SIM115 - held for the whole session
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
    path = folder / LOCK_FILE
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


def live_status(run: RunInfo, folder: Path) -> ShownStatus:
    """The status to show a user. A `running` run whose lock no live process holds is stale at once (its lock file
    proves it ran on this machine); without a lock file here, its heartbeat decides."""
    if run.status != RunStatus.RUNNING:
        return ShownStatus(run.status)
    if is_locked(folder):
        return ShownStatus(RunStatus.RUNNING)
    if (folder / LOCK_FILE).exists():
        return ShownStatus(RunStatus.RUNNING, stale=True)
    return run.shown_status


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
