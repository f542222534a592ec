"""A training session's registry writes, kept through a database outage.

While the registry cannot be reached (`RegistryUnavailable`: a PostgreSQL server down or restarting, a network
cut), the session's writes (metrics, heartbeats, checkpoint rows, status) are kept in order, in memory and in the
run folder's `registry-pending.jsonl`, and training goes on. They are written as soon as the registry answers
again, tried at doubling intervals (1 s up to 30 s). Every write is idempotent (a metric row is an upsert, a
checkpoint row replaces its file's), so one written twice, by a crash between writing it and forgetting it, does
no harm. An outage that lasts `$MBPO_REGISTRY_OUTAGE_SECONDS` (default 30 minutes) stops the run with a checkpoint
and exit status 75; the file stays, and `mbpo resume` writes it before anything else.

The limit is an environment variable, as the registry's URL is: it describes the site's database, not the
experiment, so it is no part of a run's recorded config (which resume compares, and ablations vary).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mbpo_cli.runs.layout import PENDING_FILE, run_dir
from mbpo_cli.runs.process import run_lock
from mbpo_cli.runs.registry import Registry, RegistryError, RegistryUnavailable, RunInfo, RunStatus
from mbpo_cli.runs.reporting import Reporter

OUTAGE_ENV_VAR = "MBPO_REGISTRY_OUTAGE_SECONDS"
DEFAULT_OUTAGE_SECONDS = 1800.0
OUTAGE_EXIT_CODE = 75
"""Exit status of a run stopped by a registry outage: sysexits.h's EX_TEMPFAIL, "a temporary failure; try again"."""
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


def outage_limit() -> float:
    """Seconds a session trains on while the registry cannot be reached: `$MBPO_REGISTRY_OUTAGE_SECONDS`, else 30
    minutes (0 stops at the first failed write)."""
    text = os.environ.get(OUTAGE_ENV_VAR, "").strip()
    if not text:
        return DEFAULT_OUTAGE_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise RegistryError(f"${OUTAGE_ENV_VAR}: expected a number of seconds >= 0, got {text[:40]!r}")
    return seconds


def duration(seconds: float) -> str:
    """`95` -> `1 min 35 s`; `3600` -> `60 min`."""
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" if not rest else f"{minutes} min {rest} s"


# ---------------------------------------------------------------------------------------------
# The writes a session makes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """Metric rows `(step, key, value)`, recorded at `wall_time` (seconds since the epoch)."""

    rows: tuple[tuple[int, str, float], ...]
    wall_time: float

    def apply(self, registry: Registry, run_id: str) -> None:
        """Upsert the rows."""
        registry.log_metrics(run_id, self.rows, wall_time=self.wall_time)


@dataclass(frozen=True)
class Heartbeat:
    """The run is alive, at `env_steps` after `wall_seconds` of training."""

    env_steps: int
    wall_seconds: float

    def apply(self, registry: Registry, run_id: str) -> None:
        """Set the run's progress."""
        registry.heartbeat(run_id, env_steps=self.env_steps, wall_seconds=self.wall_seconds)


@dataclass(frozen=True)
class Status:
    """The run's status, with the error that ended it, if any."""

    status: RunStatus
    error: str | None = None

    def apply(self, registry: Registry, run_id: str) -> None:
        """Set the status."""
        registry.set_status(run_id, self.status, error=self.error)


@dataclass(frozen=True)
class CheckpointRow:
    """A checkpoint file written (`path` relative to the runs directory)."""

    step: int
    path: str
    bytes: int
    sha256: str
    kind: str

    def apply(self, registry: Registry, run_id: str) -> None:
        """Record the file, replacing any row of the same path (and, for `best`, the previous best)."""
        registry.replace_checkpoint(run_id, step=self.step, path=self.path, bytes=self.bytes, sha256=self.sha256,
                                    kind=self.kind)


@dataclass(frozen=True)
class ForgetCheckpoint:
    """A checkpoint file deleted (beyond `train.keep_checkpoints`)."""

    path: str

    def apply(self, registry: Registry, run_id: str) -> None:
        """Forget the file's rows."""
        registry.remove_checkpoint(run_id, self.path)


Write = Metrics | Heartbeat | Status | CheckpointRow | ForgetCheckpoint
_KINDS: dict[str, type[Write]] = {"metrics": Metrics, "heartbeat": Heartbeat, "status": Status,
                                  "checkpoint": CheckpointRow, "forget_checkpoint": ForgetCheckpoint}
_NAMES = {kind: name for name, kind in _KINDS.items()}


def _encode(write: Write) -> str:
    return json.dumps({"write": _NAMES[type(write)], **asdict(write)})


def _decode(line: str) -> Write:
    data: dict[str, Any] = json.loads(line)
    kind = _KINDS[data.pop("write")]
    if kind is Metrics:
        data["rows"] = tuple((int(step), str(key), float(value)) for step, key, value in data["rows"])
    if kind is Status:
        data["status"] = RunStatus(data["status"])
    return kind(**data)


class PendingWrites:
    """Registry writes not recorded yet, oldest first, mirrored in `file` (rewritten whole, atomically, at each
    change, so that it always holds them all, whatever stops the process)."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.writes: list[Write] = self._load()

    def _load(self) -> list[Write]:
        try:
            lines = self.file.read_text().splitlines()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise RegistryError(f"cannot read {self.file}: {err.strerror or err}") from None
        writes = []
        for number, line in enumerate(lines, 1):
            try:
                writes.append(_decode(line))
            except (ValueError, KeyError, TypeError) as err:
                raise RegistryError(f"{self.file}, line {number}: not a registry write of this version "
                                    f"({type(err).__name__}: {str(err)[:80]})") from None
        return writes

    def add(self, write: Write) -> None:
        """Keep `write` (after the others)."""
        self.writes.append(write)
        self._save()

    def replay(self, registry: Registry, run_id: str) -> None:
        """Write them to the registry in order, forgetting each once written (a heartbeat followed by another is
        skipped); RegistryUnavailable (with the rest kept) if the registry stops answering."""
        try:
            while self.writes:
                write, later = self.writes[0], self.writes[1] if len(self.writes) > 1 else None
                if not (isinstance(write, Heartbeat) and isinstance(later, Heartbeat)):  # the later one supersedes it
                    write.apply(registry, run_id)
                self.writes.pop(0)
        finally:
            self._save()

    def _save(self) -> None:
        if not self.writes:
            self.file.unlink(missing_ok=True)
            return
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        with open(tmp, "w") as handle:
            handle.write("".join(_encode(w) + "\n" for w in self.writes))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.file)


# ---------------------------------------------------------------------------------------------
# The session's writer
# ---------------------------------------------------------------------------------------------


class RegistryWriter:
    """A session's registry writes: straight to the registry while it answers; while it does not, kept in order
    (`PendingWrites`) and tried again at doubling intervals. `expired` once an outage lasted `limit` seconds."""

    def __init__(self, registry: Registry, run_id: str, folder: Path, limit: float, say: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.run_id = run_id
        self.limit = limit
        self.say = say
        self.clock = clock
        self.pending = PendingWrites(folder / PENDING_FILE)
        self.down_since: float | None = None
        """When the current outage began (its first failed write), None while the registry answers."""
        self.next_try = 0.0
        self.delay = FIRST_RETRY_SECONDS
        self.error = ""
        """The last failure's message."""

    def write(self, write: Write) -> None:
        """Record `write`, or keep it (after any kept before) when the registry cannot be reached."""
        if self.pending.writes and not self.flush():
            self.pending.add(write)
            return
        try:
            write.apply(self.registry, self.run_id)
        except RegistryUnavailable as err:
            self._failed(err)
            self.pending.add(write)

    def log_metrics(self, step_rows: Sequence[tuple[int, str, float]]) -> None:
        """Metric rows stamped now."""
        self.write(Metrics(tuple(step_rows), time.time()))

    def flush(self, force: bool = False) -> bool:
        """Write the kept writes if a try is due (or `force`); whether none is left."""
        if not self.pending.writes:
            return True
        if not force and self.clock() < self.next_try:
            return False
        try:
            self.pending.replay(self.registry, self.run_id)
        except RegistryUnavailable as err:
            self._failed(err)
            return False
        self._recovered()
        return True

    @property
    def expired(self) -> bool:
        """Whether the current outage has lasted the limit."""
        return self.down_since is not None and self.clock() - self.down_since >= self.limit

    def drain(self, stop: Callable[[], bool]) -> bool:
        """Wait until the kept writes are recorded, the outage lasted the limit, or `stop()`; whether recorded."""
        while not self.flush():
            if self.expired or stop():
                return self.flush(force=True)
            time.sleep(min(max(self.next_try - self.clock(), 0.0), 1.0))
        return True

    def _failed(self, err: RegistryUnavailable) -> None:
        now = self.clock()
        self.error = str(err).rstrip(".")
        if self.down_since is None:
            self.down_since = now
            self.delay = FIRST_RETRY_SECONDS
            self.say(f"warning: {self.error}; training goes on and its registry writes are kept in "
                     f"{self.pending.file} until the registry answers (the run stops after {duration(self.limit)} "
                     "without it)")
        else:
            self.delay = min(2 * self.delay, MAX_RETRY_SECONDS)
        self.next_try = now + self.delay

    def _recovered(self) -> None:
        if self.down_since is not None:
            self.say(f"the registry answers again after {duration(self.clock() - self.down_since)}: the writes "
                     "kept meanwhile are recorded")
        self.down_since = None
        self.delay = FIRST_RETRY_SECONDS
        self.next_try = 0.0


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
