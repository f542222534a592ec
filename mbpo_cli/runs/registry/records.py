"""What callers of the registry see: frozen records of its rows (never ORM objects or sessions), a run's status as a
type, and the rules for run names.

A run's status is recorded as a :class:`RunStatus`. Whether a `running` run is stale (its process gone: no heartbeat
for two minutes, or a lock file that no live process holds) is a separate flag, decided when the run is shown; the two
make a :class:`ShownStatus`, whose text (``interrupted (stale)``) is made in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, TypeVar

from mbpo_cli.runs.registry.errors import RegistryError

GROUP_KINDS = ("seeds", "ablation", "tune")
CHECKPOINT_KINDS = ("periodic", "final", "best")
STALE_SECONDS = 120.0
"""How long a `running` run may go without a heartbeat before it shows as stale."""
_MAX_NAME_LEN = 80


class RunStatus(str, Enum):
    """A run's status as the registry records it (the stored text is the value)."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"

    def __str__(self) -> str:
        """The value (also in f-strings, whatever the Python version)."""
        return self.value


RUN_STATUSES = tuple(status.value for status in RunStatus)


@dataclass(frozen=True)
class ShownStatus:
    """A run's status as a user is shown it: the recorded status, and whether the run is stale (recorded as
    running, its process gone)."""

    recorded: RunStatus
    stale: bool = False

    @property
    def status(self) -> RunStatus:
        """What the run is: interrupted when stale, else as recorded."""
        return RunStatus.INTERRUPTED if self.stale else self.recorded

    def __str__(self) -> str:
        """The text shown: the status, marked ``(stale)`` when stale (``interrupted (stale)``)."""
        return f"{self.status} (stale)" if self.stale else str(self.status)


def utcnow() -> datetime:
    """Now, timezone-aware UTC (what every registry datetime is)."""
    return datetime.now(timezone.utc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value.value if isinstance(value, Enum) else value


def _record_dict(record: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(record, f.name)) for f in fields(record)}


@dataclass(frozen=True)
class RunInfo:
    """One row of the ``runs`` table (``group`` is the ``group_name`` column)."""

    id: str
    name: str
    preset: str | None
    env_id: str
    algo: str
    seed: int
    status: RunStatus
    config: dict[str, Any]
    group: str | None
    variant: str | None
    created_at: datetime
    started_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime | None
    host: str
    device: str
    version: str
    git_commit: str | None
    command: str
    error: str | None
    env_steps: int
    target_steps: int
    wall_seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RunStatus(self.status))  # the stored text, or a status given as one

    @property
    def shown_status(self) -> ShownStatus:
        """The status to show a user: a running run whose heartbeat stopped is stale."""
        return ShownStatus(self.status, is_stale(self))

    @property
    def display_status(self) -> str:
        """The text of :attr:`shown_status` (``interrupted (stale)`` for a run whose heartbeat stopped)."""
        return str(self.shown_status)

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``display_status``, JSON-serializable (datetimes as ISO 8601 strings)."""
        return {**_record_dict(self), "display_status": self.display_status}


@dataclass(frozen=True)
class CheckpointLabel:
    """How an evaluation names the checkpoint it evaluated: its kind and env step, stored as ``<kind>:<step>``
    (``best:300``)."""

    kind: str
    step: int

    def __str__(self) -> str:
        """The stored text, ``<kind>:<step>``."""
        return f"{self.kind}:{self.step}"

    @classmethod
    def parse(cls, text: str) -> CheckpointLabel | None:
        """The label stored as `text` (its step after the last ``:``, or the whole text a step); None when it names
        no step (``final``, as rows written by other means may)."""
        kind, _, step = text.rpartition(":")
        return cls(kind, int(step)) if step.isdigit() else None


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint of a run."""

    id: int
    run_id: str
    step: int
    path: str
    bytes: int
    sha256: str
    created_at: datetime
    kind: str

    @property
    def label(self) -> CheckpointLabel:
        """How an evaluation of this checkpoint names it."""
        return CheckpointLabel(self.kind, self.step)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-serializable."""
        return _record_dict(self)


@dataclass(frozen=True)
class EvalInfo:
    """One evaluation of a checkpoint over several episodes."""

    id: int
    run_id: str
    checkpoint: str
    episodes: int
    seed: int | None
    deterministic: bool
    returns: list[float]
    lengths: list[int]
    mean: float
    std: float
    created_at: datetime

    @property
    def label(self) -> CheckpointLabel | None:
        """The checkpoint evaluated, as :attr:`checkpoint` names it (None when it names no step)."""
        return CheckpointLabel.parse(self.checkpoint)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-serializable."""
        return _record_dict(self)


RecordT = TypeVar("RecordT", RunInfo, CheckpointInfo, EvalInfo)


def to_record(cls: type[RecordT], row: Any) -> RecordT:
    """The record of an ORM row (the fields of `cls` read from its attributes)."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def is_stale(run: RunInfo, now: datetime | None = None, timeout_s: float = STALE_SECONDS) -> bool:
    """Whether ``run`` claims to be running but has not sent a heartbeat for ``timeout_s`` seconds."""
    if run.status != RunStatus.RUNNING:
        return False
    last = run.heartbeat_at or run.started_at
    return (now or utcnow()) - last > timedelta(seconds=timeout_s)


def sanitize_name(name: str) -> str:
    """Make ``name`` safe as a run name and directory name.

    Characters other than ``[A-Za-z0-9._-]`` become ``-``, runs of dots collapse to one (so no ``..``),
    leading dots and dashes are dropped and the result is cut to 80 characters.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip(".-")[:_MAX_NAME_LEN]
    if not cleaned:
        raise RegistryError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-'")
    return cleaned
