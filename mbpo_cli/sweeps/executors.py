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
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


class ExecutorLost(RuntimeError):
    """The executor can no longer run or follow the runs (a Ray cluster whose head stopped answering); the message
    says what was lost."""


class Executor(Protocol):
    """Where the runs' processes execute. The ablation logic only uses these three calls.

    ``submit`` starts ``mbpo`` with ``args`` (the executor names the program where the run executes) and
    returns an opaque handle; ``poll`` returns None while it runs and its exit code after, or raises
    :class:`ExecutorLost` when the runs can no longer be followed; ``interrupt`` asks it to stop cleanly (as
    Ctrl-C would: the run checkpoints and is marked interrupted).
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
RAY_HEAD_TIMEOUT = "RAY_gcs_rpc_server_reconnect_timeout_s"
"""Ray's own limit (60 s unless this environment variable says otherwise): a driver whose cluster head (its GCS)
has not answered for that long is ended by Ray, with one line of Ray's and exit 1."""
_PROBE_SECONDS = 1.0


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


def head_patience() -> float:
    """Seconds the driver waits for a head that does not answer before it gives the cluster up: half of Ray's own
    limit (:data:`RAY_HEAD_TIMEOUT`), so that the report and the disconnect fit in the other half."""
    try:
        return max(1.0, float(os.environ.get(RAY_HEAD_TIMEOUT, "60")) / 2)
    except ValueError:
        return 30.0


class HeadWatch:
    """Whether a Ray cluster's head still accepts connections at its GCS address (``HOST:PORT``), probed at most once
    a second; :meth:`check` gives the cluster up once the head has not answered for ``patience`` seconds."""

    def __init__(self, gcs_address: str, where: str, patience: float) -> None:
        """``where`` names the cluster in the message ("the Ray cluster at HOST:PORT")."""
        self._address, self._where, self._patience = gcs_address, where, patience
        self._probed_at: float | None = None
        self._silent_since: float | None = None
        """When the head stopped answering (None while it answers)."""

    def answers(self) -> bool:
        """Whether the head answered its latest probe (a new probe when the last is a second old)."""
        now = time.monotonic()
        if self._probed_at is None or now - self._probed_at >= _PROBE_SECONDS:
            self._probed_at = now
            try:
                check_reachable(self._address, timeout=_PROBE_SECONDS)
                self._silent_since = None
            except ConnectionError:
                self._silent_since = self._silent_since or now
        return self._silent_since is None

    def check(self) -> None:
        """ExecutorLost once the head has not answered for ``patience`` seconds."""
        if not self.answers() and self._silent_since is not None \
                and time.monotonic() - self._silent_since >= self._patience:
            raise ExecutorLost(f"lost {self._where}: its head has not answered for {self._patience:g} s")


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

    With ``address`` None a local Ray instance is started for this command (never an existing cluster that Ray
    would find on its own) and shut down after it; otherwise the driver joins the cluster at ``address`` (``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT``). The cluster's head is watched (except through Ray Client, ``ray://``):
    once it has not answered for :func:`head_patience` seconds, :meth:`poll` raises :class:`ExecutorLost`, before
    Ray itself would end the driver.
    """

    def __init__(self, address: str | None, cpus: float, gpus: float, env: dict[str, str]) -> None:
        """Connect to (or start) Ray; ImportError naming the extra when Ray is not installed."""
        self._ray = require_ray()
        self._env = env
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address is None:
            options |= {"address": "local", "include_dashboard": False, "num_cpus": os.cpu_count() or 1}
        else:
            options["address"] = address
        self._ray.init(**options)
        self._local = address is None
        self._task = self._ray.remote(run_on_worker).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=[LostRunProcess])
        self._watch = None if address is not None and "://" in address else HeadWatch(
            self._ray.get_runtime_context().gcs_address,
            "the local Ray instance of this command" if address is None else f"the Ray cluster at {address}",
            head_patience())

    def submit(self, args: list[str], log: Path) -> tuple[Any, Path]:
        """Queue the run as a Ray task; its object reference and its stop file are the handle."""
        stop = stop_file(log.absolute())
        stop.unlink(missing_ok=True)
        return self._task.remote(args, str(log.absolute()), self._env), stop

    def poll(self, handle: tuple[Any, Path]) -> int | None:
        """The exit code once the task is done (130 when it was cancelled before it started, 1 when it failed
        for good), None before; ExecutorLost once the cluster's head has not answered for too long."""
        ref, _ = handle
        if self._watch is not None:
            self._watch.check()
        ready, _ = self._ray.wait([ref], timeout=0)
        if not ready:
            return None
        try:
            return int(self._ray.get(ref))
        except self._ray.exceptions.TaskCancelledError:
            return 130
        except self._ray.exceptions.RayError:
            if self._watch is not None and not self._watch.answers():
                return None  # failed with the head: the watch decides whether the cluster is lost
            return 1

    def interrupt(self, handle: tuple[Any, Path]) -> None:
        """Stop the task: a running run checkpoints and exits 130, a queued one never starts. The stop file alone
        reaches the task when the cluster's head does not answer (Ray's cancellation would wait for it)."""
        ref, stop = handle
        stop.touch()
        if self._watch is None or self._watch.answers():
            self._ray.cancel(ref)

    def close(self) -> None:
        """Disconnect from the cluster. A local instance started for this command stops, and whichever of its
        processes outlive Ray's shutdown are killed: the agents of a raylet that died without SIGTERM (its head
        lost) keep trying to report that to the head, and would stay behind."""
        started = descendants(os.getpid()) if self._local else []
        self._ray.shutdown()
        for process in started:
            process.kill()


@dataclass(frozen=True)
class Process:
    """A process as /proc shows it: its pid and its start time, which tells it from a later process given the same
    pid."""

    pid: int
    started: int

    def kill(self) -> None:
        """SIGKILL, unless it is gone (or its pid now names another process)."""
        if _stat(self.pid)[1] == self.started:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, start time) of ``pid`` from /proc (``(-1, -1)`` when it is gone or there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return -1, -1
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[Process]:
    """Every process below ``pid`` now (Linux; none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    with suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                children.setdefault(_stat(int(entry.name))[0], []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(Process(child, _stat(child)[1]))
        todo.extend(children.get(child, []))
    return found
