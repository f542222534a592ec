"""A PostgreSQL registry that goes away while a run trains, on a real server stopped and started again: the run
trains on, keeping its registry writes in its folder, and records them once the server is back; an outage longer
than `$MBPO_REGISTRY_OUTAGE_SECONDS` stops it with a checkpoint and exit 75, and `mbpo resume` records what it kept.
Either way the registry ends with every metric of the same run trained without an outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
from clihelpers import TINY, mbpo

from mbpo_cli.runs.layout import PENDING_FILE, checkpoint_file
from mbpo_cli.runs.outage import (
    OUTAGE_ENV_VAR,
    OUTAGE_EXIT_CODE,
    CheckpointRow,
    ForgetCheckpoint,
    Heartbeat,
    Metrics,
    PendingWrites,
    Status,
)
from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo

pytestmark = pytest.mark.xdist_group("registry-outage")  # one server, stopped by the tests, and one reference run
MBPO = str(Path(sys.executable).with_name("mbpo"))
STEPS = "600"
"""Enough for an outage of 1 s that begins by env step 300 to stop the run well before its end."""
UNTIMED = ("time_", "wall_seconds")


@pytest.fixture(scope="module")
def server() -> Iterator[servers.PostgresServer]:
    """A server of this module's own (its tests stop it)."""
    servers.skip_unless_available(servers.missing_reason())
    started = servers.start_postgres()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, str, float]]:
    """The metrics of the run trained without an outage (a SQLite registry): its untimed rows."""
    runs = tmp_path_factory.mktemp("reference") / "runs"
    result = mbpo(runs, "train", *TINY, "--steps", STEPS, "--json")
    assert result.exit_code == 0, result.output
    with Registry.open(runs) as registry:
        return untimed(registry, json.loads(result.stdout)["id"])


def untimed(registry: Registry, run_id: str) -> list[tuple[int, str, float]]:
    return [row for row in registry.metrics(run_id) if not row[1].startswith(UNTIMED)]


@pytest.fixture
def url(server: servers.PostgresServer) -> str:
    return server.create_database(f"outage_{time.monotonic_ns()}")


def start_training(runs: Path, url: str, **env: str) -> tuple[subprocess.Popen[str], Path]:
    """`mbpo train` of the tiny run on the registry at `url`; the process and its stderr file."""
    err = runs.parent / f"err-{time.monotonic_ns()}"
    with open(err, "w") as handle:
        proc = subprocess.Popen([MBPO, "--runs-dir", str(runs), "train", *TINY, "--steps", STEPS, "--json"],
                                stdout=subprocess.PIPE, stderr=handle, text=True,
                                env={**{k: v for k, v in os.environ.items() if k != OUTAGE_ENV_VAR},
                                     "MBPO_REGISTRY_URL": url, **env})
    return proc, err


def wait_for(url: str, proc: subprocess.Popen[str], err: Path, what: Callable[[Registry, RunInfo], bool]) -> None:
    """Until `what` holds for the new run."""
    deadline = time.monotonic() + 180
    with Registry(url) as registry:
        while not any(what(registry, run) for run in registry.list_runs()):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)


def first_checkpoint(registry: Registry, run: RunInfo) -> bool:
    return any(c.kind == "periodic" for c in registry.checkpoints(run.id))


def training(_registry: Registry, run: RunInfo) -> bool:
    return run.env_steps > 0


def assert_recorded_in_full(url: str, runs: Path, run_id: str, reference: list[Any]) -> None:
    """The run finished, with every metric of the reference run, a row for each checkpoint file and nothing kept."""
    with Registry(url) as registry:
        run = registry.get_run(run_id)
        assert (run.status, run.env_steps) == ("finished", int(STEPS))
        assert untimed(registry, run_id) == reference
        rows = registry.checkpoints(run_id)
    assert {c.kind for c in rows} == {"periodic", "final", "best"}
    assert sorted(p.name for p in (runs / run_id / "checkpoints").glob("*.pt")) == sorted(
        Path(c.path).name for c in rows)
    assert all(checkpoint_file(runs, c.path).is_file() for c in rows)
    assert not (runs / run_id / PENDING_FILE).exists()


def test_a_run_trains_through_a_registry_outage(server: servers.PostgresServer, url: str, tmp_path: Path,
                                                reference: list[Any]) -> None:
    runs = tmp_path / "runs"
    proc, err = start_training(runs, url)
    try:
        wait_for(url, proc, err, first_checkpoint)
        server.halt()
        time.sleep(4)
        assert proc.poll() is None, err.read_text()  # the outage did not end the run
        server.restart()
        out, _ = proc.communicate(timeout=300)
    finally:
        if not server.is_running():
            server.restart()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.read_text()
    stderr = err.read_text()
    assert "training goes on and its registry writes are kept in" in stderr
    assert "the registry answers again after" in stderr
    assert_recorded_in_full(url, runs, json.loads(out)["id"], reference)


def test_an_outage_past_its_limit_stops_with_a_checkpoint_and_resume_records_it(
        server: servers.PostgresServer, url: str, tmp_path: Path, reference: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    proc, err = start_training(runs, url, **{OUTAGE_ENV_VAR: "1"})
    try:
        wait_for(url, proc, err, training)  # its first heartbeat: the outage begins at once
        server.halt()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server.restart()
    assert proc.returncode == OUTAGE_EXIT_CODE, err.read_text()
    summary = json.loads(out)
    run_id, stopped_at = summary["id"], summary["env_steps"]
    assert summary["status"] == "interrupted" and stopped_at < int(STEPS)
    last = err.read_text().strip().splitlines()[-1]
    assert last.startswith("registry unreachable (registry postgresql+psycopg://") and len(last) < 1000
    assert (f"run {run_id} stopped at env step {stopped_at} with its checkpoint" in last
            and f"which `mbpo resume {run_id}` records once the registry answers" in last)
    assert (runs / run_id / PENDING_FILE).is_file()
    assert (runs / run_id / "checkpoints" / f"step-{stopped_at:010d}.pt").is_file()
    with Registry(url) as registry:  # the registry has not heard of the run since the outage began
        run = registry.get_run(run_id)
        assert run.status == "running" and run.env_steps < stopped_at
        assert all(c.step < stopped_at for c in registry.checkpoints(run_id))
        assert all(step < stopped_at for step, _, _ in registry.metrics(run_id))

    monkeypatch.setenv("MBPO_REGISTRY_URL", url)
    resumed = mbpo(runs, "resume", run_id, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert "recorded the" in resumed.stderr and f"resuming run {run_id} from env step {stopped_at}" in resumed.stderr
    assert_recorded_in_full(url, runs, run_id, reference)


def test_kept_writes_survive_the_process_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    """What a session kept is read back as it was written, by another process (a later resume); a line it cannot
    read is a one-line error naming the file and line, not a loss passed over in silence."""
    writes = [Metrics(((100, "eval_return", 7.5), (100, "alpha", 0.2)), 1.7e9), Heartbeat(100, 12.5),
              CheckpointRow(100, "abc/checkpoints/step-0000000100.pt", 1234, "ab" * 32, "periodic"),
              ForgetCheckpoint("abc/checkpoints/step-0000000050.pt"), Status("interrupted", "why")]
    kept = PendingWrites(tmp_path / PENDING_FILE)
    for write in writes:
        kept.add(write)
    assert PendingWrites(tmp_path / PENDING_FILE).writes == writes

    with open(tmp_path / PENDING_FILE, "a") as handle:
        handle.write('{"write": "teleport", "to": "mars"}\n')
    with pytest.raises(RegistryError, match=rf"^{tmp_path / PENDING_FILE}, line 6: not a registry write of this "):
        PendingWrites(tmp_path / PENDING_FILE)
