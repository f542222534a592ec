"""Where an ablation's runs execute: the executor protocol, local processes, and Ray tasks.

Runs execute as separate `mbpo train` / `mbpo resume` processes; the scheduling in
`mbpo_cli.sweeps.ablation` only speaks to :class:`Executor`, so an executor is added here without touching
the plan, the scheduling or the reporting.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


class Executor(Protocol):
    """Where the runs' processes execute. The ablation logic only uses these three calls.

    ``submit`` starts ``mbpo`` with ``args`` (the executor names the program where the run executes) and
    returns an opaque handle; ``poll`` returns None while it runs and its exit code after; ``interrupt`` asks it
    to stop cleanly (as Ctrl-C would: the run checkpoints and is marked interrupted).
    """

    def submit(self, args: list[str], log: Path) -> Any: ...
    def poll(self, handle: Any) -> int | None: ...
    def interrupt(self, handle: Any) -> None: ...


class LocalProcessExecutor:
    """Child processes on this machine, each in its own session (Ctrl-C reaches them only by forwarding)."""

    def submit(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start `mbpo args` with stdout and stderr appended to ``log``."""
        return start_logged([*mbpo_command(), *args], log)

    def poll(self, handle: subprocess.Popen[bytes]) -> int | None:
        """The exit code, or None while running."""
        return handle.poll()

    def interrupt(self, handle: subprocess.Popen[bytes]) -> None:
        """SIGINT to the child (it finishes its step, checkpoints and exits 130)."""
        if handle.poll() is None:
            with suppress(ProcessLookupError):
                handle.send_signal(signal.SIGINT)


def start_logged(argv: list[str], log: Path, note: str = "", **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, its stdout and stderr appended to ``log`` after a ``$ argv`` line
    (with ``# note`` when given)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        handle.write(f"$ {shlex.join(argv)}{f'  # {note}' if note else ''}\n".encode())
        handle.flush()
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **popen)


def mbpo_command() -> list[str]:
    """How to start the `mbpo` CLI in a child process (the console script next to this interpreter)."""
    script = Path(sys.executable).parent / "mbpo"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from mbpo_cli.cli import main; main()"]


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------

RAY_MISSING = "--executor ray needs Ray: pip install 'mbpo-cli[ray]'"
RETRIES = 3
"""How many times Ray runs a task again after its worker (or the run's process) was killed."""
_POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1


class LostRunProcess(RuntimeError):
    """The run's process was killed by a signal it did not ask for (its node ran out of memory, ...): Ray retries."""


def require_ray() -> ModuleType:
    """The `ray` module; ImportError with the one-line install hint when the extra is missing."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """ConnectionError unless something listens at a ``HOST:PORT`` cluster address (Ray itself would retry an
    unreachable one for many minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


def _prepare_child() -> None:
    """In the child, before exec: take SIGINT and SIGTERM again (a Ray worker blocks SIGINT, and may ignore it,
    as a cluster started from a background shell job does: the child would inherit both and never see its stop),
    and be killed when the worker that started it dies (Linux)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_file(log: Path) -> Path:
    """The file whose presence asks a Ray task to stop its run (next to its log, in the shared runs directory)."""
    return log.with_name(log.name + ".stop")


def run_on_worker(args: list[str], log: str, env: dict[str, str]) -> int:
    """The body of one Ray task: `mbpo args` as a child process of the worker, its output appended to ``log``.

    A stop arrives as the stop file (see :func:`stop_file`) or as Ray's cancellation (KeyboardInterrupt, which
    a worker whose SIGINT is ignored never sees): the child gets SIGINT, checkpoints and exits 130. The child
    dies with the worker, so a lost worker leaves no orphan holding the run's lock when Ray retries the task. A
    child killed by SIGKILL (or SIGSEGV, ...) raises :class:`LostRunProcess`, which Ray also retries; the
    retried command continues the run from its newest checkpoint.
    """
    stop = stop_file(Path(log))
    if stop.exists():
        return 130
    child = start_logged([*mbpo_command(), *args], Path(log),
                         f"ray task on {socket.gethostname()}, worker pid {os.getpid()}",
                         env={**os.environ, **env}, preexec_fn=_prepare_child)
    try:
        while child.poll() is None and not stop.exists():  # a wait that cancellation can interrupt
            time.sleep(_POLL_SECONDS)
    except KeyboardInterrupt:
        pass
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    child.wait()
    code = child.returncode
    if code < 0 and -code not in (signal.SIGINT, signal.SIGTERM):
        raise LostRunProcess(f"the run's process was killed by signal {-code}")
    return code


class RayExecutor:
    """Each run is a Ray task that requests ``cpus`` CPUs and ``gpus`` GPUs (fractions allowed) and runs the
    `mbpo` command on whichever node Ray picks. Every node must have mbpo installed, reach the registry and
    mount the runs directory at the same path.

    With ``address`` None a local Ray instance is started for this command and shut down after it; otherwise
    the driver joins the cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``).
    """

    def __init__(self, address: str | None, cpus: float, gpus: float, env: dict[str, str]) -> None:
        """Connect to (or start) Ray; ImportError naming the extra when Ray is not installed."""
        self._ray = require_ray()
        self._env = env
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address is None:
            options |= {"include_dashboard": False, "num_cpus": os.cpu_count() or 1}
        else:
            options["address"] = address
        self._ray.init(**options)
        self._task = self._ray.remote(run_on_worker).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=[LostRunProcess])

    def submit(self, args: list[str], log: Path) -> tuple[Any, Path]:
        """Queue the run as a Ray task; its object reference and its stop file are the handle."""
        stop = stop_file(log.absolute())
        stop.unlink(missing_ok=True)
        return self._task.remote(args, str(log.absolute()), self._env), stop

    def poll(self, handle: tuple[Any, Path]) -> int | None:
        """The exit code once the task is done (130 when it was cancelled before it started, 1 when it failed
        for good), None before."""
        ref, _ = handle
        ready, _ = self._ray.wait([ref], timeout=0)
        if not ready:
            return None
        try:
            return int(self._ray.get(ref))
        except self._ray.exceptions.TaskCancelledError:
            return 130
        except self._ray.exceptions.RayError:
            return 1

    def interrupt(self, handle: tuple[Any, Path]) -> None:
        """Stop the task: a running run checkpoints and exits 130, a queued one never starts."""
        ref, stop = handle
        stop.touch()
        self._ray.cancel(ref)

    def close(self) -> None:
        """Disconnect from the cluster (a local instance started for this command stops)."""
        self._ray.shutdown()
