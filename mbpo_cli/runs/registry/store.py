"""The run registry: every run, its metrics, checkpoints and evaluations in one SQL database.

Several training processes may write the same registry at once (see :mod:`mbpo_cli.runs.registry.database`).
Callers only ever see the frozen records of :mod:`mbpo_cli.runs.registry.records`, never ORM objects or sessions.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from mbpo_cli import __version__
from mbpo_cli.runs.registry.database import Database, rowcount, upsert_metrics
from mbpo_cli.runs.registry.errors import RegistryError
from mbpo_cli.runs.registry.location import URL_ENV_VAR, default_url
from mbpo_cli.runs.registry.records import (
    CHECKPOINT_KINDS,
    GROUP_KINDS,
    RUN_STATUSES,
    CheckpointInfo,
    EvalInfo,
    RunInfo,
    RunStatus,
    sanitize_name,
    to_record,
    utcnow,
)
from mbpo_cli.runs.registry.tables import SqlCheckpoint, SqlEvaluation, SqlGroup, SqlMetric, SqlRun

T = TypeVar("T")
_MIN_PREFIX_LEN = 4


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise RegistryError(f"invalid {what} {value!r}: expected one of {', '.join(allowed)}")


class Registry:
    """The run registry. Each method runs in its own short transaction; the object holds no session."""

    def __init__(self, url: str, *, create_dir: bool = False, read_only: bool = False) -> None:
        """Connect to ``url``, create missing tables and check the schema version.

        A SQLite file's folder is created only when `create_dir` (the runs directory; an explicit URL must name
        an existing folder). `read_only`, for commands that only read: a SQLite file in a folder this process
        cannot write (archived runs) is read from a private copy, and nothing is written beside it.
        ``warning`` is one line for the user, or None: a SQLite file on a network filesystem, where SQLite's locking
        cannot be trusted.
        """
        self._db = Database(url, create_dir=create_dir, read_only=read_only)
        self.url = url
        self.where = self._db.where
        """The database as messages name it: the SQLite file, or the URL with its credentials as `***`."""
        self.warning = self._db.warning

    @classmethod
    def open(cls, runs_dir: Path, *, read_only: bool = False) -> Registry:
        """Open the registry for ``runs_dir`` (see :func:`default_url`), creating the folder if needed.

        `read_only` is for commands that only read (`runs list`, `compare`, ...): a registry in a folder this
        process cannot write is opened without writing.
        """
        url = default_url(runs_dir)
        return cls(url, create_dir=URL_ENV_VAR not in os.environ or not os.environ[URL_ENV_VAR],
                   read_only=read_only)

    def check_alive(self) -> None:
        """RegistryLost when the SQLite file this registry opened was deleted or replaced since (a run that
        trained on would finish with nothing recorded)."""
        self._db.check_alive()

    def close(self) -> None:
        """Release all pooled connections (and a read-only copy)."""
        self._db.close()

    def __enter__(self) -> Registry:
        """Use the registry as a context manager that closes it on exit."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the registry."""
        self.close()

    def _write(self, fn: Callable[[Session], T]) -> T:
        return self._db.write(fn)

    def _read(self, fn: Callable[[Session], T]) -> T:
        return self._db.read(fn)

    def _require_run(self, s: Session, run_id: str) -> None:
        if s.scalar(select(SqlRun.id).where(SqlRun.id == run_id)) is None:
            raise RegistryError(f"no run {run_id!r} in {self.where}")

    # ----- runs and groups -----

    def create_run(
        self,
        *,
        name: str | None,
        preset: str | None,
        env_id: str,
        algo: str,
        seed: int,
        config: dict[str, Any],
        device: str,
        command: str,
        target_steps: int,
        group: str | None = None,
        variant: str | None = None,
        git_commit: str | None = None,
    ) -> RunInfo:
        """Register a new run with status ``running``; ``name=None`` derives a name from preset/env/algo."""
        wanted = sanitize_name(name) if name is not None else None

        def create(s: Session) -> RunInfo:
            run_id = secrets.token_hex(4)
            while s.get(SqlRun, run_id) is not None:
                run_id = secrets.token_hex(4)
            run_name = wanted or sanitize_name(f"{preset or env_id.lower()}-{algo}-s{seed}-{run_id}")
            if s.scalar(select(SqlRun.id).where(SqlRun.name == run_name)) is not None:
                raise RegistryError(f"run name {run_name!r} is already taken in {self.where}")
            if group is not None and s.get(SqlGroup, group) is None:
                raise RegistryError(f"no group {group!r} in {self.where}")
            now = utcnow()
            row = SqlRun(
                id=run_id,
                name=run_name,
                preset=preset,
                env_id=env_id,
                algo=algo,
                seed=seed,
                status=RunStatus.RUNNING.value,
                config=config,
                group=group,
                variant=variant,
                created_at=now,
                started_at=now,
                ended_at=None,
                heartbeat_at=now,
                host=socket.gethostname(),
                device=device,
                version=__version__,
                git_commit=git_commit,
                command=command,
                error=None,
                env_steps=0,
                target_steps=target_steps,
                wall_seconds=0.0,
            )
            s.add(row)
            s.flush()
            return to_record(RunInfo, row)

        return self._write(create)

    def ensure_group(self, name: str, kind: str, info: dict[str, Any] | None = None) -> None:
        """Create group ``name`` if missing; a given ``info`` replaces the stored one."""
        _check(kind, GROUP_KINDS, "group kind")

        def ensure(s: Session) -> None:
            row = s.get(SqlGroup, name)
            if row is None:
                s.add(SqlGroup(name=name, kind=kind, created_at=utcnow(), info=info or {}))
            elif row.kind != kind:
                raise RegistryError(f"group {name!r} already exists with kind {row.kind!r}, not {kind!r}")
            elif info is not None:
                row.info = info

        self._write(ensure)

    def get_run(self, ref: str) -> RunInfo:
        """Find a run by id, exact name, or unique id prefix of at least 4 characters."""

        def find(s: Session) -> RunInfo:
            row = s.get(SqlRun, ref) or s.scalar(select(SqlRun).where(SqlRun.name == ref))
            if row is None and len(ref) >= _MIN_PREFIX_LEN:
                matches = s.scalars(
                    select(SqlRun).where(SqlRun.id.startswith(ref, autoescape=True)).order_by(SqlRun.id).limit(6)
                ).all()
                if len(matches) > 1:
                    ids = ", ".join(m.id for m in matches[:5])
                    raise RegistryError(f"run id prefix {ref!r} is ambiguous in {self.where}: matches {ids}")
                row = matches[0] if matches else None
            if row is None:
                raise RegistryError(f"no run {ref!r} in {self.where}")
            return to_record(RunInfo, row)

        return self._read(find)

    def list_runs(
        self, *, status: RunStatus | None = None, preset: str | None = None, group: str | None = None
    ) -> list[RunInfo]:
        """Runs matching all given filters, newest first."""
        query = select(SqlRun).order_by(SqlRun.created_at.desc(), SqlRun.id)
        if status is not None:
            query = query.where(SqlRun.status == RunStatus(status).value)
        if preset is not None:
            query = query.where(SqlRun.preset == preset)
        if group is not None:
            query = query.where(SqlRun.group == group)
        return self._read(lambda s: [to_record(RunInfo, r) for r in s.scalars(query)])

    def runs_in_group(self, group: str) -> list[RunInfo]:
        """The runs of ``group`` in creation order."""
        query = select(SqlRun).where(SqlRun.group == group).order_by(SqlRun.created_at, SqlRun.id)
        return self._read(lambda s: [to_record(RunInfo, r) for r in s.scalars(query)])

    def group_info(self, name: str) -> dict[str, Any] | None:
        """A group's kind and info as `{"kind": ..., "info": {...}}`, or None when there is no such group."""

        def read(s: Session) -> dict[str, Any] | None:
            row = s.get(SqlGroup, name)
            return None if row is None else {"kind": row.kind, "info": dict(row.info or {})}

        return self._read(read)

    def group_names(self) -> list[str]:
        """All group names, sorted."""
        return self._read(lambda s: list(s.scalars(select(SqlGroup.name).order_by(SqlGroup.name))))

    def set_status(self, run_id: str, status: RunStatus, *, error: str | None = None) -> None:
        """Change a run's status; ending sets ``ended_at``, going back to running clears it and the error."""
        _check(status, RUN_STATUSES, "run status")

        now = utcnow()
        values: dict[str, Any] = {"status": RunStatus(status).value}
        if status == RunStatus.RUNNING:
            values.update(ended_at=None, error=None, heartbeat_at=now)
        else:
            values.update(ended_at=now, error=error)
        self._update_run(run_id, values)

    def heartbeat(
        self, run_id: str, *, env_steps: int | None = None, wall_seconds: float | None = None
    ) -> None:
        """Record that the run is alive, optionally with its progress."""
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if env_steps is not None:
            values["env_steps"] = env_steps
        if wall_seconds is not None:
            values["wall_seconds"] = wall_seconds
        self._update_run(run_id, values)

    def update_config(self, run_id: str, config: dict[str, Any], *, target_steps: int | None = None) -> None:
        """Replace the run's stored resolved config (and its step target, when given)."""
        values: dict[str, Any] = {"config": config}
        if target_steps is not None:
            values["target_steps"] = target_steps
        self._update_run(run_id, values)

    def _update_run(self, run_id: str, values: dict[str, Any]) -> None:
        def apply(s: Session) -> None:
            if rowcount(s.execute(update(SqlRun).where(SqlRun.id == run_id).values(**values))) == 0:
                raise RegistryError(f"no run {run_id!r} in {self.where}")

        self._write(apply)

    def delete_run(self, run_id: str) -> None:
        """Delete a run; its metrics, checkpoints and evaluations go with it (ON DELETE CASCADE)."""

        def apply(s: Session) -> None:
            if rowcount(s.execute(delete(SqlRun).where(SqlRun.id == run_id))) == 0:
                raise RegistryError(f"no run {run_id!r} in {self.where}")

        self._write(apply)

    # ----- metrics -----

    def log_metrics(
        self, run_id: str, rows: Sequence[tuple[int, str, float]], wall_time: float | None = None
    ) -> None:
        """Store ``(step, key, value)`` rows in one transaction; an existing (step, key) is replaced.

        Non-finite values (a metric undefined at that step, such as a recall with no positive example) are not
        stored: SQLite would turn NaN into NULL, and every reader expects numbers.
        """
        stamp = time.time() if wall_time is None else wall_time
        latest = {(int(step), key): float(value) for step, key, value in rows if math.isfinite(float(value))}
        params = [
            {"run_id": run_id, "step": step, "key": key, "value": value, "wall_time": stamp}
            for (step, key), value in latest.items()
        ]
        if not params:
            return

        def apply(s: Session) -> None:
            self._require_run(s, run_id)
            upsert_metrics(s.connection(), params)

        self._write(apply)

    def metrics(self, run_id: str, key: str | None = None) -> list[tuple[int, str, float]]:
        """The run's ``(step, key, value)`` rows, optionally for one key, ordered by step then key."""
        query = select(SqlMetric.step, SqlMetric.key, SqlMetric.value).where(SqlMetric.run_id == run_id)
        if key is not None:
            query = query.where(SqlMetric.key == key)
        query = query.order_by(SqlMetric.step, SqlMetric.key)
        return self._read(lambda s: [(step, k, value) for step, k, value in s.execute(query)])

    def metric_keys(self, run_id: str) -> list[str]:
        """The distinct metric keys the run has logged, sorted."""
        query = select(SqlMetric.key).where(SqlMetric.run_id == run_id).distinct().order_by(SqlMetric.key)
        return self._read(lambda s: list(s.scalars(query)))

    def delete_metrics_after(self, run_id: str, step: int) -> int:
        """Delete the run's metric rows with a step greater than ``step``; returns how many were deleted."""
        stmt = delete(SqlMetric).where(SqlMetric.run_id == run_id, SqlMetric.step > step)
        return self._write(lambda s: rowcount(s.execute(stmt)))

    # ----- checkpoints and evaluations -----

    def add_checkpoint(
        self, run_id: str, *, step: int, path: str, bytes: int, sha256: str, kind: str
    ) -> None:
        """Record a checkpoint file of the run."""
        _check(kind, CHECKPOINT_KINDS, "checkpoint kind")
        row = SqlCheckpoint(
            run_id=run_id, step=step, path=path, bytes=bytes, sha256=sha256, created_at=utcnow(), kind=kind
        )

        def apply(s: Session) -> None:
            self._require_run(s, run_id)
            s.add(row)

        self._write(apply)

    def replace_checkpoint(
        self, run_id: str, *, step: int, path: str, bytes: int, sha256: str, kind: str
    ) -> None:
        """Record a checkpoint file in place of the run's rows for the same path (for a ``best`` one, of every
        ``best`` row: a run has one best policy), in one transaction: the same call twice leaves one row, so a
        write kept through an outage may be written again."""
        _check(kind, CHECKPOINT_KINDS, "checkpoint kind")
        same = SqlCheckpoint.path == path
        if kind == "best":
            same = or_(same, SqlCheckpoint.kind == "best")
        row = SqlCheckpoint(
            run_id=run_id, step=step, path=path, bytes=bytes, sha256=sha256, created_at=utcnow(), kind=kind
        )

        def apply(s: Session) -> None:
            self._require_run(s, run_id)
            s.execute(delete(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id, same))
            s.add(row)

        self._write(apply)

    def checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints ordered by step, then by insertion."""
        query = (
            select(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id).order_by(SqlCheckpoint.step, SqlCheckpoint.id)
        )
        return self._read(lambda s: [to_record(CheckpointInfo, r) for r in s.scalars(query)])

    def remove_checkpoint(self, run_id: str, path: str) -> None:
        """Forget the run's checkpoint rows for ``path`` (the file itself is left alone)."""
        stmt = delete(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id, SqlCheckpoint.path == path)
        self._write(lambda s: s.execute(stmt))

    def add_evaluation(
        self,
        run_id: str,
        *,
        checkpoint: str,
        episodes: int,
        seed: int | None,
        deterministic: bool,
        returns: list[float],
        lengths: list[int],
    ) -> EvalInfo:
        """Record an evaluation; its mean and (population) std are computed from ``returns``."""
        if not returns or len(returns) != len(lengths):
            raise RegistryError(
                f"evaluation needs one length per return and at least one episode, got "
                f"{len(returns)} returns and {len(lengths)} lengths"
            )
        row = SqlEvaluation(
            run_id=run_id,
            checkpoint=checkpoint,
            episodes=episodes,
            seed=seed,
            deterministic=deterministic,
            returns=[float(r) for r in returns],
            lengths=[int(n) for n in lengths],
            mean=statistics.fmean(returns),
            std=statistics.pstdev(returns),
            created_at=utcnow(),
        )

        def apply(s: Session) -> EvalInfo:
            self._require_run(s, run_id)
            s.add(row)
            s.flush()
            return to_record(EvalInfo, row)

        return self._write(apply)

    def evaluations(self, run_id: str) -> list[EvalInfo]:
        """The run's evaluations in the order they were recorded."""
        query = select(SqlEvaluation).where(SqlEvaluation.run_id == run_id).order_by(SqlEvaluation.id)
        return self._read(lambda s: [to_record(EvalInfo, r) for r in s.scalars(query)])
