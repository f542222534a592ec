"""A SQLite registry's file: its folder, a private copy for reading where it may not be written, the network
filesystems its locking cannot be trusted on, its identity (to notice it deleted or replaced), and the connection
settings that let several processes write it at once (WAL, a busy timeout, ``BEGIN IMMEDIATE``)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection

from mbpo_cli.runs.registry.errors import RegistryError
from mbpo_cli.runs.registry.location import URL_ENV_VAR

COMPANIONS = ("", "-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps for one database (the database itself first)."""
WRITE_OPTION = "mbpo_write"
"""The execution option of a connection whose transactions write (they begin with ``BEGIN IMMEDIATE``)."""
_BUSY_TIMEOUT_MS = 30_000
_COPY_NAME = "registry.db"
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "coda", "lustre", "gpfs", "beegfs", "ceph",
    "glusterfs", "orangefs", "pvfs2", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph-fuse", "fuse.s3fs",
    "fuse.rclone", "fuse.gcsfuse", "fuse.juicefs",
})
"""Filesystem types, as /proc/mounts names them, whose file locking SQLite cannot rely on."""


def writable(directory: Path) -> bool:
    """Whether this process may create files in `directory`."""
    return os.access(directory, os.W_OK | os.X_OK)


def prepare_folder(db_file: Path, create: bool) -> None:
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


def read_only_copy(db_file: Path) -> Path | None:
    """For a process that only reads: a private copy of a database in a folder it may not write (SQLite cannot open a
    WAL database where it may not create its -shm file), as a new temporary folder's ``registry.db``; None when the
    file can be opened where it is (or does not exist)."""
    if not db_file.is_file() or writable(db_file.parent):
        return None
    folder = Path(tempfile.mkdtemp(prefix="mbpo-registry-"))
    for suffix in ("", "-wal"):
        if Path(f"{db_file}{suffix}").is_file():
            shutil.copyfile(f"{db_file}{suffix}", folder / f"{_COPY_NAME}{suffix}")
    return folder / _COPY_NAME


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


def network_warning(db_file: Path) -> str | None:
    """One line for the user when the database file is on a network filesystem, where SQLite's locking cannot be
    trusted; None on a local one."""
    fstype = network_filesystem(db_file.resolve())
    if fstype is None:
        return None
    return (f"registry {db_file} is on a network filesystem ({fstype}): SQLite's locking is unreliable there; "
            f"share a PostgreSQL registry instead: {URL_ENV_VAR}=postgresql+psycopg://...")


def identity(db_file: Path) -> tuple[int, int] | None:
    """The file's (device, inode), None when it does not exist."""
    try:
        stat = db_file.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def configure(engine: Engine) -> None:
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
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
