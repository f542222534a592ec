"""Run registry: every run, its metrics, checkpoints and evaluations in one SQL database.

The default store is SQLite at ``<runs_dir>/registry.db`` (WAL mode, busy timeout, write transactions
taken with ``BEGIN IMMEDIATE``) so that several training processes can write the same registry at once.
Set ``MBPO_REGISTRY_URL`` to any SQLAlchemy URL to use another database; PostgreSQL
(``postgresql+psycopg://...``, the ``postgres`` extra) is the one to share between machines, where SQLite's
file locking cannot be trusted. Callers only ever see frozen dataclasses (:class:`RunInfo`,
:class:`CheckpointInfo`, :class:`EvalInfo`), never ORM objects or sessions.
"""

import math
import os
import re
import secrets
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, CursorResult, Result, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from mbpo_cli import __version__
from mbpo_cli.runs.credentials import masked, secret_values, shown_url

SCHEMA_VERSION = 1
URL_ENV_VAR = "MBPO_REGISTRY_URL"
RUN_STATUSES = ("running", "finished", "interrupted", "failed")
GROUP_KINDS = ("seeds", "ablation", "tune")
CHECKPOINT_KINDS = ("periodic", "final", "best")

_BUSY_TIMEOUT_MS = 30_000
_LOCK_RETRIES = 5
_MAX_NAME_LEN = 80
_MIN_PREFIX_LEN = 4
_WRITE_OPTION = "mbpo_write"
_SCHEMA_LOCK_KEY = 0x6D62_706F_5F72_6567
"""PostgreSQL advisory lock (the bytes of "mbpo_reg") held while a process creates or checks the schema."""
_PG_RETRY_STATES = frozenset({"40001", "40P01", "23505"})
"""SQLSTATEs of PostgreSQL conflicts with a concurrent transaction, which a retry resolves: serialization failure,
deadlock, and unique violation (every insert checks for its key first, so a violation means that a concurrent
transaction inserted it in between; the retry sees that row, as SQLite's serialized writers would)."""
_PG_DOWN_STATES = ("08", "53", "57P01", "57P02", "57P03", "57P05")
"""SQLSTATE prefixes of a PostgreSQL server that cannot serve this process for now: connection exceptions, a server
out of resources (disk full, too many connections), one shutting down, crashed, starting up, or that ended an idle
session."""
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "coda", "lustre", "gpfs", "beegfs", "ceph",
    "glusterfs", "orangefs", "pvfs2", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph-fuse", "fuse.s3fs",
    "fuse.rclone", "fuse.gcsfuse", "fuse.juicefs",
})
"""Filesystem types, as /proc/mounts names them, whose file locking SQLite cannot rely on."""

T = TypeVar("T")


class RegistryLost(RuntimeError):
    """The registry's database file was deleted or replaced while this process used it (one line; exit 1)."""


class RegistryError(Exception):
    """A registry problem that the user can act on; the message is one line."""


class RegistryUnavailable(RegistryError):
    """The database cannot be reached for now (a server down or restarting, a network cut, a SQLite file locked
    past every retry): the same write may succeed later."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


class _Base(DeclarativeBase):
    # 64-bit integers everywhere (seeds, step counts, checkpoint sizes); SQLite's INTEGER already is, and only
    # INTEGER PRIMARY KEY gives it an autoincrementing rowid
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime,
        int: BigInteger().with_variant(Integer(), "sqlite"),
    }


class _SchemaVersion(_Base):
    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int]


class _Group(_Base):
    __tablename__ = "groups"
    name: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]
    created_at: Mapped[datetime]
    info: Mapped[dict[str, Any]] = mapped_column(JSON)


class _Run(_Base):
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


class _Metric(_Base):
    __tablename__ = "metrics"
    # One unique index serves run_id lookups, (run_id, key, step) range reads and the upsert target.
    __table_args__ = (Index("ux_metrics_run_key_step", "run_id", "key", "step", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    key: Mapped[str]
    value: Mapped[float]
    wall_time: Mapped[float]


def _metrics_table() -> Table:
    """The metrics Table, for Core statements (declarative typing only promises a FromClause)."""
    table = _Metric.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{_Metric.__name__} is not mapped to a table")
    return table


class _Checkpoint(_Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int]
    sha256: Mapped[str]
    created_at: Mapped[datetime]
    kind: Mapped[str]


class _Evaluation(_Base):
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


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


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
    status: str
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

    @property
    def display_status(self) -> str:
        """The status to show a user: a running run whose heartbeat stopped is ``interrupted (stale)``."""
        return "interrupted (stale)" if is_stale(self) else self.status

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``display_status``, JSON-serializable (datetimes as ISO 8601 strings)."""
        return {**_record_dict(self), "display_status": self.display_status}


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

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-serializable."""
        return _record_dict(self)


_RecordT = TypeVar("_RecordT", RunInfo, CheckpointInfo, EvalInfo)


def _to_record(cls: type[_RecordT], row: Any) -> _RecordT:
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


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


def is_stale(run: RunInfo, now: datetime | None = None, timeout_s: float = 120.0) -> bool:
    """Whether ``run`` claims to be running but has not sent a heartbeat for ``timeout_s`` seconds."""
    if run.status != "running":
        return False
    last = run.heartbeat_at or run.started_at
    return (now or _utcnow()) - last > timedelta(seconds=timeout_s)


def default_url(runs_dir: Path) -> str:
    """``$MBPO_REGISTRY_URL`` if set, else the SQLite file ``<runs_dir>/registry.db``."""
    return os.environ.get(URL_ENV_VAR) or f"sqlite:///{(runs_dir / 'registry.db').absolute()}"


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise RegistryError(f"invalid {what} {value!r}: expected one of {', '.join(allowed)}")


def _is_transient(exc: DBAPIError) -> bool:
    """Whether a retry may succeed: SQLite's "database is locked", PostgreSQL's conflicts with another transaction."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _PG_RETRY_STATES
    message = str(exc.orig).lower()
    return isinstance(exc, OperationalError) and ("locked" in message or "busy" in message)


def _is_unreachable(exc: DBAPIError, backend: str) -> bool:
    """Whether the database could not be reached or dropped the connection: a PostgreSQL server that is down,
    restarting or out of resources (psycopg's connection failures carry no SQLSTATE), or a SQLite file still
    locked after every retry."""
    if exc.connection_invalidated:
        return True
    if backend == "sqlite":
        return _is_transient(exc)
    if backend != "postgresql":
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, OperationalError) if sqlstate is None else str(sqlstate).startswith(_PG_DOWN_STATES)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _db_message(exc: DBAPIError) -> str:
    """The driver's own message of a database error on one line (the wrapper's when there is no driver error)."""
    return _one_line(exc.orig if exc.orig is not None else exc)


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: `Session.execute` is typed as returning a Result, DML gives a CursorResult."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the CursorResult of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount


def _sqlite_file(parsed: URL) -> Path | None:
    """The database file of a SQLite URL, or None for other backends and in-memory databases."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _missing_postgres_driver(parsed: URL) -> str:
    """The one-line error for a PostgreSQL URL whose driver cannot be imported (the password hidden)."""
    shown = shown_url(parsed)
    driver = parsed.get_driver_name()
    if driver == "psycopg":
        return f"registry URL {shown} needs the PostgreSQL driver: pip install 'mbpo-cli[postgres]'"
    return (f"registry URL {shown} needs the PostgreSQL driver {driver}, which is not installed: use "
            "postgresql+psycopg://... and pip install 'mbpo-cli[postgres]'")


def _prepare_sqlite_dir(db_file: Path, create: bool) -> None:
    """The database's folder, created when `create` (the runs directory), else required (an explicit URL)."""
    directory = db_file.parent
    if not create and not directory.is_dir():
        raise RegistryError(f"registry URL (${URL_ENV_VAR}) names {db_file}, whose folder {directory} does not "
                            "exist")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(f"cannot write runs directory {directory}: {exc.strerror or exc}") from exc
    if not writable(directory):
        raise RegistryError(f"cannot write runs directory {directory}: permission denied")


def _mount_field(field: str) -> str:
    """A /proc/mounts field with its octal escapes (``\\040`` for a space, ...) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The filesystem type of the network filesystem holding `path`, None for a local one (or no /proc/mounts).

    `path` is absolute with its symlinks resolved, as the kernel names it; `mounts` is the text of /proc/mounts
    (read when None). The mount point holding `path` is the longest one that is `path` or one of its parents (the
    last mounted where several share it).
    """
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = Path(_mount_field(parts[1]))
        if (point == path or point in path.parents) and (best is None or len(point.parts) >= best[0]):
            best = (len(point.parts), parts[2])
    return best[1] if best is not None and best[1] in NETWORK_FILESYSTEMS else None


def writable(directory: Path) -> bool:
    """Whether this process may create files in `directory`."""
    return os.access(directory, os.W_OK | os.X_OK)


def _identity(db_file: Path) -> tuple[int, int] | None:
    """The file's (device, inode), None when it does not exist."""
    try:
        stat = db_file.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _configure_sqlite(engine: Engine) -> None:
    """Use WAL, a busy timeout and foreign keys, and let the registry issue BEGIN itself.

    pysqlite's own implicit BEGIN is turned off so that write transactions can start with
    ``BEGIN IMMEDIATE``: taking the write lock up front avoids the read-then-write upgrade that makes
    SQLite fail at once with "database is locked" instead of waiting for the busy timeout.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


_DIALECT_INSERTS: dict[str, Callable[[Table], Any]] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}
"""The databases whose INSERT has ON CONFLICT DO UPDATE, with SQLAlchemy's construct for it (the two constructs
share that API, but not a type that declares it)."""


def _upsert_metrics(conn: Connection, params: list[dict[str, Any]]) -> None:
    """Insert metric rows with ON CONFLICT DO UPDATE on (run_id, key, step), as one executemany (SQLite,
    PostgreSQL); other databases take the portable :func:`_replace_metrics`."""
    dialect_insert = _DIALECT_INSERTS.get(conn.dialect.name)
    if dialect_insert is None:
        _replace_metrics(conn, params)
        return
    stmt = dialect_insert(_metrics_table())
    upsert = stmt.on_conflict_do_update(
        index_elements=["run_id", "key", "step"],
        set_={"value": stmt.excluded.value, "wall_time": stmt.excluded.wall_time},
    )
    conn.execute(upsert, params)


def _replace_metrics(conn: Connection, params: list[dict[str, Any]]) -> None:
    """Portable upsert for other databases: delete the matching (run_id, key, step) rows, then insert."""
    table = _metrics_table()
    match = delete(table).where(
        table.c.run_id == bindparam("run_id"),
        table.c.key == bindparam("key"),
        table.c.step == bindparam("step"),
    )
    conn.execute(match, params)
    conn.execute(insert(table), params)


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
        try:
            parsed = make_url(url)
        except (ArgumentError, ImportError) as exc:
            raise RegistryError(f"cannot use registry URL (see ${URL_ENV_VAR}): {masked(_one_line(exc))}") from exc
        except ValueError:  # its port is not a number; not echoed, as it may hold part of a password
            raise RegistryError(f"cannot use registry URL (see ${URL_ENV_VAR}): its port is not a number (a user "
                                "name or password with '@', ':' or '/' must be percent-encoded)") from None
        self._secrets = secret_values(parsed)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise RegistryError(f"registry URL {shown_url(parsed)!r} is an in-memory database: nothing would be "
                                "kept; name a file, e.g. sqlite:////path/to/registry.db")
        db_file = _sqlite_file(parsed)
        self._snapshot: Path | None = None
        if read_only and db_file is not None and db_file.is_file() and not writable(db_file.parent):
            # SQLite cannot open a WAL database where it may not create its -shm file: read a private copy
            self._snapshot = Path(tempfile.mkdtemp(prefix="mbpo-registry-"))
            for suffix in ("", "-wal"):
                if Path(f"{db_file}{suffix}").is_file():
                    shutil.copyfile(f"{db_file}{suffix}", self._snapshot / f"registry.db{suffix}")
            parsed = make_url(f"sqlite:///{self._snapshot / 'registry.db'}")
        elif db_file is not None:
            _prepare_sqlite_dir(db_file, create_dir)
        self.where = str(db_file) if db_file else shown_url(parsed)
        """The database as messages name it: the SQLite file, or the URL with its credentials as `***`."""
        try:
            # a server may drop a connection that a long training run left idle between epochs (restart, idle
            # timeout): check each pooled connection before use and replace a dead one
            self._engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
        except (ArgumentError, ImportError) as exc:
            if isinstance(exc, ImportError) and parsed.get_backend_name() == "postgresql":
                raise RegistryError(_missing_postgres_driver(parsed)) from exc
            raise RegistryError(f"cannot use registry URL (see ${URL_ENV_VAR}): "
                                f"{masked(_one_line(exc), self._secrets)}") from exc
        self.url = url
        self._db_file = None if self._snapshot is not None else db_file
        fstype = None if self._db_file is None else network_filesystem(self._db_file.resolve())
        self.warning = None if fstype is None else (
            f"registry {self._db_file} is on a network filesystem ({fstype}): SQLite's locking is unreliable there; "
            f"share a PostgreSQL registry instead: {URL_ENV_VAR}=postgresql+psycopg://..."
        )
        if parsed.get_backend_name() == "sqlite":
            _configure_sqlite(self._engine)
        self._write_engine = self._engine.execution_options(**{_WRITE_OPTION: True})
        self._identity: tuple[int, int] | None = None
        try:
            self._write(self._init_schema)
        except BaseException:
            self.close()
            raise
        self._identity = None if db_file is None else _identity(db_file)

    @classmethod
    def open(cls, runs_dir: Path, *, read_only: bool = False) -> "Registry":
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
        if self._db_file is not None and self._identity is not None and _identity(self._db_file) != self._identity:
            raise RegistryLost(f"the registry {self._db_file} was deleted or replaced while this process used it: "
                               "what it recorded since is lost")

    def close(self) -> None:
        """Release all pooled connections (and a read-only copy)."""
        self._engine.dispose()
        if self._snapshot is not None:
            shutil.rmtree(self._snapshot, ignore_errors=True)

    def __enter__(self) -> "Registry":
        """Use the registry as a context manager that closes it on exit."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the registry."""
        self.close()

    def _init_schema(self, s: Session) -> None:
        conn = s.connection()
        if conn.dialect.name == "postgresql":
            # concurrent CREATE TABLEs of the same table fail rather than wait: one process at a time (SQLite's
            # BEGIN IMMEDIATE already serializes this)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        _Base.metadata.create_all(conn)
        stored = s.scalar(select(_SchemaVersion.version))
        if stored is None:
            s.add(_SchemaVersion(id=1, version=SCHEMA_VERSION))
        else:
            self._check_version(stored)

    def _check_version(self, stored: int) -> None:
        if stored > SCHEMA_VERSION:
            raise RegistryError(
                f"registry {self.where} has schema version {stored}, newer than this program's "
                f"{SCHEMA_VERSION}: upgrade mbpo"
            )

    def _transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction, retrying a few times while the database is locked or the transaction
        conflicted with a concurrent one.

        A database that cannot be reached (see :func:`_is_unreachable`) raises RegistryUnavailable; other database
        errors (not a database, a corrupt file, a refused login, ...) become one-line RegistryErrors. Their text
        never shows a credential of the URL.
        """
        engine = self._write_engine if write else self._engine
        attempt = 0
        while True:
            try:
                with Session(engine, expire_on_commit=False) as s, s.begin():
                    return fn(s)
            except DBAPIError as exc:
                if not _is_transient(exc) or attempt >= _LOCK_RETRIES:
                    message = f"registry {self.where}: {masked(_db_message(exc), self._secrets)}"
                    if _is_unreachable(exc, engine.dialect.name):
                        raise RegistryUnavailable(message) from exc
                    raise RegistryError(message) from exc
            time.sleep(0.05 * 2**attempt)
            attempt += 1

    def _write(self, fn: Callable[[Session], T]) -> T:
        self.check_alive()
        return self._transaction(fn, write=True)

    def _read(self, fn: Callable[[Session], T]) -> T:
        return self._transaction(fn, write=False)

    def _require_run(self, s: Session, run_id: str) -> None:
        if s.scalar(select(_Run.id).where(_Run.id == run_id)) is None:
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
            while s.get(_Run, run_id) is not None:
                run_id = secrets.token_hex(4)
            run_name = wanted or sanitize_name(f"{preset or env_id.lower()}-{algo}-s{seed}-{run_id}")
            if s.scalar(select(_Run.id).where(_Run.name == run_name)) is not None:
                raise RegistryError(f"run name {run_name!r} is already taken in {self.where}")
            if group is not None and s.get(_Group, group) is None:
                raise RegistryError(f"no group {group!r} in {self.where}")
            now = _utcnow()
            row = _Run(
                id=run_id,
                name=run_name,
                preset=preset,
                env_id=env_id,
                algo=algo,
                seed=seed,
                status="running",
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
            return _to_record(RunInfo, row)

        return self._write(create)

    def ensure_group(self, name: str, kind: str, info: dict[str, Any] | None = None) -> None:
        """Create group ``name`` if missing; a given ``info`` replaces the stored one."""
        _check(kind, GROUP_KINDS, "group kind")

        def ensure(s: Session) -> None:
            row = s.get(_Group, name)
            if row is None:
                s.add(_Group(name=name, kind=kind, created_at=_utcnow(), info=info or {}))
            elif row.kind != kind:
                raise RegistryError(f"group {name!r} already exists with kind {row.kind!r}, not {kind!r}")
            elif info is not None:
                row.info = info

        self._write(ensure)

    def get_run(self, ref: str) -> RunInfo:
        """Find a run by id, exact name, or unique id prefix of at least 4 characters."""

        def find(s: Session) -> RunInfo:
            row = s.get(_Run, ref) or s.scalar(select(_Run).where(_Run.name == ref))
            if row is None and len(ref) >= _MIN_PREFIX_LEN:
                matches = s.scalars(
                    select(_Run).where(_Run.id.startswith(ref, autoescape=True)).order_by(_Run.id).limit(6)
                ).all()
                if len(matches) > 1:
                    ids = ", ".join(m.id for m in matches[:5])
                    raise RegistryError(f"run id prefix {ref!r} is ambiguous in {self.where}: matches {ids}")
                row = matches[0] if matches else None
            if row is None:
                raise RegistryError(f"no run {ref!r} in {self.where}")
            return _to_record(RunInfo, row)

        return self._read(find)

    def list_runs(
        self, *, status: str | None = None, preset: str | None = None, group: str | None = None
    ) -> list[RunInfo]:
        """Runs matching all given filters, newest first."""
        query = select(_Run).order_by(_Run.created_at.desc(), _Run.id)
        if status is not None:
            query = query.where(_Run.status == status)
        if preset is not None:
            query = query.where(_Run.preset == preset)
        if group is not None:
            query = query.where(_Run.group == group)
        return self._read(lambda s: [_to_record(RunInfo, r) for r in s.scalars(query)])

    def runs_in_group(self, group: str) -> list[RunInfo]:
        """The runs of ``group`` in creation order."""
        query = select(_Run).where(_Run.group == group).order_by(_Run.created_at, _Run.id)
        return self._read(lambda s: [_to_record(RunInfo, r) for r in s.scalars(query)])

    def group_info(self, name: str) -> dict[str, Any] | None:
        """A group's kind and info as `{"kind": ..., "info": {...}}`, or None when there is no such group."""

        def read(s: Session) -> dict[str, Any] | None:
            row = s.get(_Group, name)
            return None if row is None else {"kind": row.kind, "info": dict(row.info or {})}

        return self._read(read)

    def group_names(self) -> list[str]:
        """All group names, sorted."""
        return self._read(lambda s: list(s.scalars(select(_Group.name).order_by(_Group.name))))

    def set_status(self, run_id: str, status: str, *, error: str | None = None) -> None:
        """Change a run's status; ending sets ``ended_at``, going back to running clears it and the error."""
        _check(status, RUN_STATUSES, "run status")

        now = _utcnow()
        values: dict[str, Any] = {"status": status}
        if status == "running":
            values.update(ended_at=None, error=None, heartbeat_at=now)
        else:
            values.update(ended_at=now, error=error)
        self._update_run(run_id, values)

    def heartbeat(
        self, run_id: str, *, env_steps: int | None = None, wall_seconds: float | None = None
    ) -> None:
        """Record that the run is alive, optionally with its progress."""
        values: dict[str, Any] = {"heartbeat_at": _utcnow()}
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
            if _rowcount(s.execute(update(_Run).where(_Run.id == run_id).values(**values))) == 0:
                raise RegistryError(f"no run {run_id!r} in {self.where}")

        self._write(apply)

    def delete_run(self, run_id: str) -> None:
        """Delete a run; its metrics, checkpoints and evaluations go with it (ON DELETE CASCADE)."""

        def apply(s: Session) -> None:
            if _rowcount(s.execute(delete(_Run).where(_Run.id == run_id))) == 0:
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
            _upsert_metrics(s.connection(), params)

        self._write(apply)

    def metrics(self, run_id: str, key: str | None = None) -> list[tuple[int, str, float]]:
        """The run's ``(step, key, value)`` rows, optionally for one key, ordered by step then key."""
        query = select(_Metric.step, _Metric.key, _Metric.value).where(_Metric.run_id == run_id)
        if key is not None:
            query = query.where(_Metric.key == key)
        query = query.order_by(_Metric.step, _Metric.key)
        return self._read(lambda s: [(step, k, value) for step, k, value in s.execute(query)])

    def metric_keys(self, run_id: str) -> list[str]:
        """The distinct metric keys the run has logged, sorted."""
        query = select(_Metric.key).where(_Metric.run_id == run_id).distinct().order_by(_Metric.key)
        return self._read(lambda s: list(s.scalars(query)))

    def delete_metrics_after(self, run_id: str, step: int) -> int:
        """Delete the run's metric rows with a step greater than ``step``; returns how many were deleted."""
        stmt = delete(_Metric).where(_Metric.run_id == run_id, _Metric.step > step)
        return self._write(lambda s: _rowcount(s.execute(stmt)))

    # ----- checkpoints and evaluations -----

    def add_checkpoint(
        self, run_id: str, *, step: int, path: str, bytes: int, sha256: str, kind: str
    ) -> None:
        """Record a checkpoint file of the run."""
        _check(kind, CHECKPOINT_KINDS, "checkpoint kind")
        row = _Checkpoint(
            run_id=run_id, step=step, path=path, bytes=bytes, sha256=sha256, created_at=_utcnow(), kind=kind
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
        same = _Checkpoint.path == path
        if kind == "best":
            same = or_(same, _Checkpoint.kind == "best")
        row = _Checkpoint(
            run_id=run_id, step=step, path=path, bytes=bytes, sha256=sha256, created_at=_utcnow(), kind=kind
        )

        def apply(s: Session) -> None:
            self._require_run(s, run_id)
            s.execute(delete(_Checkpoint).where(_Checkpoint.run_id == run_id, same))
            s.add(row)

        self._write(apply)

    def checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints ordered by step, then by insertion."""
        query = (
            select(_Checkpoint).where(_Checkpoint.run_id == run_id).order_by(_Checkpoint.step, _Checkpoint.id)
        )
        return self._read(lambda s: [_to_record(CheckpointInfo, r) for r in s.scalars(query)])

    def remove_checkpoint(self, run_id: str, path: str) -> None:
        """Forget the run's checkpoint rows for ``path`` (the file itself is left alone)."""
        stmt = delete(_Checkpoint).where(_Checkpoint.run_id == run_id, _Checkpoint.path == path)
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
        row = _Evaluation(
            run_id=run_id,
            checkpoint=checkpoint,
            episodes=episodes,
            seed=seed,
            deterministic=deterministic,
            returns=[float(r) for r in returns],
            lengths=[int(n) for n in lengths],
            mean=statistics.fmean(returns),
            std=statistics.pstdev(returns),
            created_at=_utcnow(),
        )

        def apply(s: Session) -> EvalInfo:
            self._require_run(s, run_id)
            s.add(row)
            s.flush()
            return _to_record(EvalInfo, row)

        return self._write(apply)

    def evaluations(self, run_id: str) -> list[EvalInfo]:
        """The run's evaluations in the order they were recorded."""
        query = select(_Evaluation).where(_Evaluation.run_id == run_id).order_by(_Evaluation.id)
        return self._read(lambda s: [_to_record(EvalInfo, r) for r in s.scalars(query)])
