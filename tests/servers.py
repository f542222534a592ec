"""Real servers for the tests, started by the tests: a PostgreSQL cluster (Debian's `initdb` + `pg_ctl`) on a Unix
socket in a temporary folder, and a one-node Ray cluster on 127.0.0.1. Tests that need one skip, with the reason,
only where the binaries are missing.

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user the Debian package creates, in
a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "postgres"

REQUIRE_SERVERS = "MBPO_REQUIRE_SERVERS"
"""Set (CI sets it) to make a missing server binary a failure instead of a skip."""


def skip_unless_available(reason: str | None) -> None:
    """Skip the test with `reason` (a missing server binary or driver); fail instead where $MBPO_REQUIRE_SERVERS
    is set."""
    if reason is not None:
        if os.environ.get(REQUIRE_SERVERS):
            pytest.fail(f"{reason} (${REQUIRE_SERVERS} is set)")
        pytest.skip(reason)


def postgres_bin() -> Path | None:
    """The folder holding `initdb` and `pg_ctl` (on PATH, or Debian's /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def missing_reason() -> str | None:
    """Why no PostgreSQL server can be started here, or None when one can."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed: pip install 'mbpo-cli[postgres]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} user to run the server as"
    return None


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster; `url(db)` is the SQLAlchemy URL of one of its databases."""

    root: Path
    bin: Path

    @property
    def socket_dir(self) -> Path:
        """Where the server's Unix socket lives."""
        return self.root / "socket"

    def url(self, database: str) -> str:
        """`postgresql+psycopg://` URL of `database` over the Unix socket."""
        return f"postgresql+psycopg://{PG_USER}@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user=PG_USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _as_server_user(self, *argv: str) -> list[str]:
        return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else list(argv)

    def start(self) -> None:
        """initdb (trust authentication, no TCP) and start the server; returns once it accepts connections."""
        data = self.root / "data"
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run(self._as_server_user(str(self.bin / "initdb"), "-D", str(data), "-U", PG_USER,
                                            "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True)
        self.restart()

    def halt(self) -> None:
        """Stop the server at once, as a crash or a network cut would, keeping its data (see `restart`)."""
        subprocess.run(self._as_server_user(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                                            "immediate", "-w", "stop"), check=True, capture_output=True)

    def is_running(self) -> bool:
        """Whether the server is up (`pg_ctl status`)."""
        status = subprocess.run(self._as_server_user(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"),
                                                     "status"), capture_output=True)
        return status.returncode == 0

    def restart(self) -> None:
        """Start the server on its data folder; returns once it accepts connections."""
        options = (f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} -c fsync=off "
                   "-c max_connections=200 -c full_page_writes=off")
        subprocess.run(self._as_server_user(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-o", options,
                                            "-w", "-l", str(self.root / "server.log"), "start"),
                       check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while not (self.socket_dir / ".s.PGSQL.5432").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: see {self.root / 'server.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server at once and remove its folder."""
        subprocess.run(self._as_server_user(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                                            "immediate", "stop"), capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A new server in a new temporary folder (readable by the server's user)."""
    binaries = postgres_bin()
    assert binaries is not None
    root = Path(tempfile.mkdtemp(prefix="mbpo-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root, binaries)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def ray_missing_reason() -> str | None:
    """Why no Ray cluster can be started here, or None when one can."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray not installed: pip install 'mbpo-cli[ray]'"
    if _ray_cli() is None:
        return "the `ray` command is missing next to this Python"
    return None


def _ray_cli() -> str | None:
    script = Path(sys.executable).parent / "ray"
    return str(script) if script.is_file() else shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
"""The test cluster listens on loopback only: no usage reports, and no token authentication (with tokens, Ray
2.60 drivers fail to join a head started with --node-ip-address=127.0.0.1 on a machine whose node IP differs)."""


@dataclass(frozen=True)
class Proc:
    """A live process as /proc shows it; its start time tells it from a later process given the same pid."""

    pid: int
    parent: int
    started: int
    command: str


def live_processes() -> dict[int, Proc]:
    """Every live process (zombies left out), by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[19]), command.strip())
    return found


def descendants(pids: set[int], processes: dict[int, Proc] | None = None) -> dict[int, Proc]:
    """The live processes below any of `pids`."""
    processes = live_processes() if processes is None else processes
    found: dict[int, Proc] = {}
    todo = set(pids)
    while todo:
        below = {p.pid for p in processes.values() if p.parent in todo and p.pid not in found}
        found.update((pid, processes[pid]) for pid in below)
        todo = below
    return found


def surviving(processes: dict[int, Proc]) -> dict[int, Proc]:
    """Those of `processes` still alive (the same pid with the same start time)."""
    now = live_processes()
    return {pid: p for pid, p in processes.items() if pid in now and now[pid].started == p.started}


def kill_processes(processes: dict[int, Proc]) -> None:
    """SIGKILL those of `processes` still alive (never a later process given one of their pids)."""
    for pid in surviving(processes):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class RayCluster:
    """A one-node Ray cluster started with `ray start --head` on 127.0.0.1; drivers join `address` with `env`."""

    address: str
    temp_dir: Path
    env: dict[str, str]

    def daemons(self) -> dict[int, Proc]:
        """The processes `ray start --head` started (GCS, raylet, dashboard, monitors: their command lines name the
        cluster's folder)."""
        return {pid: p for pid, p in live_processes().items() if str(self.temp_dir) in p.command}

    def processes(self) -> dict[int, Proc]:
        """Every process of this cluster now: its daemons and everything below them (agents, workers, runs)."""
        daemons = self.daemons()
        return daemons | descendants(set(daemons))

    def stop(self, orphans: dict[int, Proc] | None = None) -> None:
        """SIGKILL every process of this cluster, with those of `orphans` still alive (its processes seen earlier,
        no longer below its daemons once these died), and remove its folder. Not `ray stop`: that stops every Ray
        process on the machine, other clusters' too."""
        kill_processes((orphans or {}) | self.processes())
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_ray(cpus: int) -> RayCluster:
    """`ray start --head` bound to 127.0.0.1 with `cpus` CPUs, no dashboard, no usage reporting, and SIGINT
    ignored, as in a cluster started from a background shell job: its workers inherit that, Ray's cancellation
    never reaches a task, and Ctrl-C must still stop the runs (the executor's stop file)."""
    cli = _ray_cli()
    assert cli is not None
    port = _free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="mbpo-ray-"))
    subprocess.run([cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
                    "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                   check=True, capture_output=True, timeout=120, env={**os.environ, **RAY_ENV},
                   preexec_fn=_ignore_sigint)
    return RayCluster(f"127.0.0.1:{port}", temp_dir, dict(RAY_ENV))
