"""The connection to the registry's database: its URL checked (credentials never shown), the engine, short
transactions retried while the database is locked or a concurrent one conflicted, the schema created or checked,
and database errors turned into one-line :class:`RegistryError` / :class:`RegistryUnavailable`.

The default database is SQLite at ``<runs_dir>/registry.db`` (see :mod:`mbpo_cli.runs.registry.sqlite`);
``$MBPO_REGISTRY_URL`` names any other, PostgreSQL (``postgresql+psycopg://...``, the ``postgres`` extra) being the
one to share between machines, where SQLite's file locking cannot be trusted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, create_engine, delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, Result, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session

from mbpo_cli.runs.registry import sqlite
from mbpo_cli.runs.registry.credentials import masked, secret_values, shown_url
from mbpo_cli.runs.registry.errors import RegistryError, RegistryLost, RegistryUnavailable
from mbpo_cli.runs.registry.location import URL_ENV_VAR, sqlite_file
from mbpo_cli.runs.registry.tables import SCHEMA_VERSION, SqlBase, SqlSchemaVersion, metrics_table

T = TypeVar("T")

_LOCK_RETRIES = 5
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _db_message(exc: DBAPIError) -> str:
    """The driver's own message of a database error on one line (the wrapper's when there is no driver error)."""
    return _one_line(exc.orig if exc.orig is not None else exc)


def is_transient(exc: DBAPIError) -> bool:
    """Whether a retry may succeed: SQLite's "database is locked", PostgreSQL's conflicts with another transaction."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _PG_RETRY_STATES
    message = str(exc.orig).lower()
    return isinstance(exc, OperationalError) and ("locked" in message or "busy" in message)


def is_unreachable(exc: DBAPIError, backend: str) -> bool:
    """Whether the database could not be reached or dropped the connection: a PostgreSQL server that is down,
    restarting or out of resources (psycopg's connection failures carry no SQLSTATE), or a SQLite file still
    locked after every retry."""
    if exc.connection_invalidated:
        return True
    if backend == "sqlite":
        return is_transient(exc)
    if backend != "postgresql":
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(exc, OperationalError) if sqlstate is None else str(sqlstate).startswith(_PG_DOWN_STATES)


def _parse(url: str) -> URL:
    """The parsed URL; RegistryError (no credential shown) when it is not one."""
    try:
        return make_url(url)
    except (ArgumentError, ImportError) as exc:
        raise RegistryError(f"cannot use registry URL (see ${URL_ENV_VAR}): {masked(_one_line(exc))}") from exc
    except ValueError:  # its port is not a number; not echoed, as it may hold part of a password
        raise RegistryError(f"cannot use registry URL (see ${URL_ENV_VAR}): its port is not a number (a user "
                            "name or password with '@', ':' or '/' must be percent-encoded)") from None


def _missing_postgres_driver(parsed: URL) -> str:
    """The one-line error for a PostgreSQL URL whose driver cannot be imported (the password hidden)."""
    shown = shown_url(parsed)
    driver = parsed.get_driver_name()
    if driver == "psycopg":
        return f"registry URL {shown} needs the PostgreSQL driver: pip install 'mbpo-cli[postgres]'"
    return (f"registry URL {shown} needs the PostgreSQL driver {driver}, which is not installed: use "
            "postgresql+psycopg://... and pip install 'mbpo-cli[postgres]'")


def _engine(parsed: URL, secrets: tuple[str, ...]) -> Engine:
    """The engine for `parsed`; RegistryError for a backend or driver that cannot be used."""
    try:
        # a server may drop a connection that a long training run left idle between epochs (restart, idle
        # timeout): check each pooled connection before use and replace a dead one
        return create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (ArgumentError, ImportError) as exc:
        if isinstance(exc, ImportError) and parsed.get_backend_name() == "postgresql":
            raise RegistryError(_missing_postgres_driver(parsed)) from exc
        raise RegistryError(f"cannot use registry URL (see ${URL_ENV_VAR}): {masked(_one_line(exc), secrets)}") from exc


class Database:
    """The registry's database: each call of :meth:`write` or :meth:`read` is one short transaction; the object holds
    no session."""

    def __init__(self, url: str, *, create_dir: bool, read_only: bool) -> None:
        """Connect to ``url``, create missing tables and check the schema version (see :class:`Registry`)."""
        parsed = _parse(url)
        self._secrets = secret_values(parsed)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise RegistryError(f"registry URL {shown_url(parsed)!r} is an in-memory database: nothing would be "
                                "kept; name a file, e.g. sqlite:////path/to/registry.db")
        db_file = sqlite_file(parsed)
        copy = sqlite.read_only_copy(db_file) if read_only and db_file is not None else None
        self._copy_folder = None if copy is None else copy.parent
        if copy is not None:
            parsed = make_url(f"sqlite:///{copy}")
        elif db_file is not None:
            sqlite.prepare_folder(db_file, create_dir)
        self.where = str(db_file) if db_file else shown_url(parsed)
        """The database as messages name it: the SQLite file, or the URL with its credentials as `***`."""
        self._engine = _engine(parsed, self._secrets)
        self.file = None if copy is not None else db_file
        """The SQLite file written (None for a server, or a read-only copy)."""
        self.warning = None if self.file is None else sqlite.network_warning(self.file)
        """One line for the user, or None: a SQLite file on a network filesystem."""
        if parsed.get_backend_name() == "sqlite":
            sqlite.configure(self._engine)
        self._write_engine = self._engine.execution_options(**{sqlite.WRITE_OPTION: True})
        self._identity: tuple[int, int] | None = None
        try:
            self.write(self._init_schema)
        except BaseException:
            self.close()
            raise
        self._identity = None if db_file is None else sqlite.identity(db_file)

    def check_alive(self) -> None:
        """RegistryLost when the SQLite file this database opened was deleted or replaced since."""
        if self.file is not None and self._identity is not None and sqlite.identity(self.file) != self._identity:
            raise RegistryLost(f"the registry {self.file} was deleted or replaced while this process used it: "
                               "what it recorded since is lost")

    def close(self) -> None:
        """Release all pooled connections (and a read-only copy)."""
        self._engine.dispose()
        if self._copy_folder is not None:
            shutil.rmtree(self._copy_folder, ignore_errors=True)

    def _init_schema(self, s: Session) -> None:
        conn = s.connection()
        if conn.dialect.name == "postgresql":
            # concurrent CREATE TABLEs of the same table fail rather than wait: one process at a time (SQLite's
            # BEGIN IMMEDIATE already serializes this)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        SqlBase.metadata.create_all(conn)
        stored = s.scalar(select(SqlSchemaVersion.version))
        if stored is None:
            s.add(SqlSchemaVersion(id=1, version=SCHEMA_VERSION))
        elif stored > SCHEMA_VERSION:
            raise RegistryError(
                f"registry {self.where} has schema version {stored}, newer than this program's "
                f"{SCHEMA_VERSION}: upgrade mbpo"
            )

    def _transaction(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction, retrying a few times while the database is locked or the transaction
        conflicted with a concurrent one.

        A database that cannot be reached (see :func:`is_unreachable`) raises RegistryUnavailable; other database
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
                if not is_transient(exc) or attempt >= _LOCK_RETRIES:
                    message = f"registry {self.where}: {masked(_db_message(exc), self._secrets)}"
                    if is_unreachable(exc, engine.dialect.name):
                        raise RegistryUnavailable(message) from exc
                    raise RegistryError(message) from exc
            time.sleep(0.05 * 2**attempt)
            attempt += 1

    def write(self, fn: Callable[[Session], T]) -> T:
        """``fn`` in one write transaction (RegistryLost first if the SQLite file was replaced)."""
        self.check_alive()
        return self._transaction(fn, write=True)

    def read(self, fn: Callable[[Session], T]) -> T:
        """``fn`` in one read transaction."""
        return self._transaction(fn, write=False)


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: `Session.execute` is typed as returning a Result, DML gives a CursorResult."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the CursorResult of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount



_DIALECT_INSERTS: dict[str, Callable[[Table], Any]] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}
"""The databases whose INSERT has ON CONFLICT DO UPDATE, with SQLAlchemy's construct for it (the two constructs
share that API, but not a type that declares it)."""


def upsert_metrics(conn: Connection, params: list[dict[str, Any]]) -> None:
    """Insert metric rows with ON CONFLICT DO UPDATE on (run_id, key, step), as one executemany (SQLite,
    PostgreSQL); other databases take the portable :func:`replace_metrics`."""
    dialect_insert = _DIALECT_INSERTS.get(conn.dialect.name)
    if dialect_insert is None:
        replace_metrics(conn, params)
        return
    stmt = dialect_insert(metrics_table())
    upsert = stmt.on_conflict_do_update(
        index_elements=["run_id", "key", "step"],
        set_={"value": stmt.excluded.value, "wall_time": stmt.excluded.wall_time},
    )
    conn.execute(upsert, params)


def replace_metrics(conn: Connection, params: list[dict[str, Any]]) -> None:
    """Portable upsert for other databases: delete the matching (run_id, key, step) rows, then insert."""
    table = metrics_table()
    match = delete(table).where(
        table.c.run_id == bindparam("run_id"),
        table.c.key == bindparam("key"),
        table.c.step == bindparam("step"),
    )
    conn.execute(match, params)
    conn.execute(insert(table), params)
