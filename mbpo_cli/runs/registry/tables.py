"""The registry's SQL tables (SQLAlchemy ORM): schema version, groups, runs, metrics, checkpoints and evaluations.

Only the store (:mod:`mbpo_cli.runs.registry.store`) touches them; callers see the records of
:mod:`mbpo_cli.runs.registry.records`. A run's status column holds :class:`RunStatus` values as plain strings, as every
version of mbpo wrote them.
"""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, ForeignKey, Index, Integer, Table, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime column that stores UTC and always reads back timezone-aware UTC values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Reject naive datetimes and normalise aware ones to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("registry datetimes must be timezone-aware")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to values from backends (such as SQLite) that drop the timezone."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class SqlBase(DeclarativeBase):
    """The tables' metadata. 64-bit integers everywhere (seeds, step counts, checkpoint sizes); SQLite's INTEGER
    already is, and only INTEGER PRIMARY KEY gives it an autoincrementing rowid."""

    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime,
        int: BigInteger().with_variant(Integer(), "sqlite"),
    }


class SqlSchemaVersion(SqlBase):
    """The one row naming the schema version the database was created with."""

    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int]


class SqlGroup(SqlBase):
    """A group of runs (the seeds of one command, or an ablation) with its kind and description."""

    __tablename__ = "groups"
    name: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]
    created_at: Mapped[datetime]
    info: Mapped[dict[str, Any]] = mapped_column(JSON)


class SqlRun(SqlBase):
    """One run: how it was asked for, where it ran and how far it got."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    preset: Mapped[str | None]
    env_id: Mapped[str]
    algo: Mapped[str]
    seed: Mapped[int]
    status: Mapped[str] = mapped_column(index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    group: Mapped[str | None] = mapped_column("group_name", ForeignKey("groups.name"), index=True)
    variant: Mapped[str | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    host: Mapped[str]
    device: Mapped[str]
    version: Mapped[str]
    git_commit: Mapped[str | None]
    command: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    env_steps: Mapped[int] = mapped_column(default=0)
    target_steps: Mapped[int]
    wall_seconds: Mapped[float] = mapped_column(default=0.0)


class SqlMetric(SqlBase):
    """One metric value of a run at an env step."""

    __tablename__ = "metrics"
    # One unique index serves run_id lookups, (run_id, key, step) range reads and the upsert target.
    __table_args__ = (Index("ux_metrics_run_key_step", "run_id", "key", "step", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    key: Mapped[str]
    value: Mapped[float]
    wall_time: Mapped[float]


def metrics_table() -> Table:
    """The metrics Table, for Core statements (declarative typing only promises a FromClause)."""
    table = SqlMetric.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{SqlMetric.__name__} is not mapped to a table")
    return table


class SqlCheckpoint(SqlBase):
    """One checkpoint file of a run (its path relative to the runs directory)."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int]
    sha256: Mapped[str]
    created_at: Mapped[datetime]
    kind: Mapped[str]


class SqlEvaluation(SqlBase):
    """One `mbpo eval` of a checkpoint: its episodes' returns and lengths."""

    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    checkpoint: Mapped[str] = mapped_column(Text)
    episodes: Mapped[int]
    seed: Mapped[int | None]
    deterministic: Mapped[bool]
    returns: Mapped[list[float]] = mapped_column(JSON)
    lengths: Mapped[list[int]] = mapped_column(JSON)
    mean: Mapped[float]
    std: Mapped[float]
    created_at: Mapped[datetime]
