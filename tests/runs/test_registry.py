"""Tests for the run registry (mbpo_cli.registry), each about the registry's behaviour on both SQLite and a real
PostgreSQL server."""

import json
import multiprocessing
import re
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Executable, TextClause, bindparam, create_engine, inspect, text

from mbpo_cli.runs.registry import (
    CheckpointLabel,
    Registry,
    RegistryError,
    RunInfo,
    RunStatus,
    ShownStatus,
    default_url,
    is_stale,
    sanitize_name,
)
from mbpo_cli.runs.registry import sqlite as registry_sqlite
from mbpo_cli.runs.registry.credentials import masked
from mbpo_cli.runs.registry.database import replace_metrics
from mbpo_cli.runs.registry.sqlite import network_filesystem
from mbpo_cli.runs.registry.tables import SCHEMA_VERSION, UTCDateTime


@pytest.fixture(autouse=True)
def _no_registry_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new registry database: the SQLite file of a runs directory, or a new PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    (tmp_path / "runs").mkdir()
    return default_url(tmp_path / "runs")


@pytest.fixture
def reg(url: str) -> Iterator[Registry]:
    registry = Registry(url)
    yield registry
    registry.close()


def _new_run(reg: Registry, **overrides: Any) -> RunInfo:
    fields: dict[str, Any] = {
        "name": None,
        "preset": "cheetah",
        "env_id": "HalfCheetah-v4",
        "algo": "mbpo",
        "seed": 0,
        "config": {"lr": 3e-4, "layers": [200, 200]},
        "device": "cpu",
        "command": "mbpo train cheetah --seed 0",
        "target_steps": 1000,
    }
    return reg.create_run(**{**fields, **overrides})


def _sql(reg: Registry, statement: str | Executable, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the registry's database behind the registry's back (committed at once); its rows."""
    engine = create_engine(reg.url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement) if isinstance(statement, str) else statement, params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _at(statement: str, *names: str) -> TextClause:
    """`statement` with its parameters `names` bound as registry datetimes (stored as the registry stores them)."""
    return text(statement).bindparams(*(bindparam(name, type_=UTCDateTime()) for name in names))


# ----- schema -----


def test_open_creates_tables_and_version(reg: Registry) -> None:
    engine = create_engine(reg.url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"schema_version", "groups", "runs", "metrics", "checkpoints", "evaluations"} <= tables
    assert _sql(reg, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_sqlite_registry_uses_wal(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "runs"), sqlite3.connect(tmp_path / "runs" / "registry.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopen_keeps_runs_and_single_version_row(reg: Registry) -> None:
    run = _new_run(reg)
    with Registry(reg.url) as again:
        assert again.get_run(run.id) == run
    assert _sql(reg, "SELECT count(*) FROM schema_version") == [(1,)]


def test_newer_schema_version_is_refused(reg: Registry) -> None:
    _sql(reg, "UPDATE schema_version SET version = :version", version=SCHEMA_VERSION + 1)
    with pytest.raises(RegistryError, match="newer than this program's") as info:
        Registry(reg.url)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(info.value)
    assert "upgrade mbpo" in str(info.value)


def test_default_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("MBPO_REGISTRY_URL", "sqlite:///elsewhere.db")
    assert default_url(tmp_path) == "sqlite:///elsewhere.db"


def test_unwritable_runs_dir_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RegistryError, match="cannot write runs directory") as info:
        Registry.open(blocker / "runs")
    assert "\n" not in str(info.value)
    assert str(blocker / "runs") in str(info.value)


# ----- runs -----


def test_create_get_list_roundtrip(reg: Registry) -> None:
    run = _new_run(reg, name="my run", seed=3, git_commit="abc123")
    assert run.name == "my-run"
    assert len(run.id) == 8 and int(run.id, 16) >= 0
    assert run.status == "running" and run.env_steps == 0 and run.wall_seconds == 0.0
    assert run.created_at.tzinfo is not None and run.ended_at is None
    assert run.version and run.host and run.git_commit == "abc123"
    assert reg.get_run(run.id) == run
    assert reg.get_run("my-run") == run
    assert reg.get_run(run.id[:4]) == run
    assert reg.get_run(run.id).config == {"lr": 3e-4, "layers": [200, 200]}


def test_auto_name(reg: Registry) -> None:
    with_preset = _new_run(reg, seed=7)
    assert with_preset.name == f"cheetah-mbpo-s7-{with_preset.id}"
    without = _new_run(reg, preset=None, env_id="Ant v4/x", algo="sac")
    assert without.name == f"ant-v4-x-sac-s0-{without.id}"


def test_list_runs_filters_newest_first(reg: Registry) -> None:
    reg.ensure_group("sweep", "seeds")
    first = _new_run(reg, name="a", group="sweep")
    second = _new_run(reg, name="b", preset="hopper")
    third = _new_run(reg, name="c", group="sweep")
    reg.set_status(second.id, "finished")
    assert [r.name for r in reg.list_runs()] == ["c", "b", "a"]
    assert [r.name for r in reg.list_runs(status="running")] == ["c", "a"]
    assert [r.name for r in reg.list_runs(preset="hopper")] == ["b"]
    assert [r.id for r in reg.list_runs(group="sweep")] == [third.id, first.id]
    assert [r.id for r in reg.runs_in_group("sweep")] == [first.id, third.id]


def test_unknown_run_and_ambiguous_prefix(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["abcd0001", "abcd0001", "abcd0002"])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(ids))
    one = _new_run(reg)
    two = _new_run(reg)
    assert (one.id, two.id) == ("abcd0001", "abcd0002")  # the colliding id was regenerated
    with pytest.raises(RegistryError, match="ambiguous"):
        reg.get_run("abcd")
    assert reg.get_run("abcd0002") == two
    with pytest.raises(RegistryError, match=f"no run 'nope' in {re.escape(reg.where)}$"):
        reg.get_run("nope")
    with pytest.raises(RegistryError, match="no run 'abc'"):
        reg.get_run("abc")  # too short to be a prefix
    for wildcard in ("abc_", "abc%"):  # LIKE's wildcards match themselves only
        with pytest.raises(RegistryError, match=f"no run '{wildcard}'"):
            reg.get_run(wildcard)


def test_names_are_unique(reg: Registry) -> None:
    _new_run(reg, name="exp")
    with pytest.raises(RegistryError, match="already taken"):
        _new_run(reg, name="exp")
    with pytest.raises(RegistryError, match="already taken"):
        _new_run(reg, name="/exp")  # sanitizes to the same name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a b/c", "a-b-c"),
        ("../../etc", "etc"),
        ("run..name", "run.name"),
        ("..hidden", "hidden"),
        ("ok_Name-1.2", "ok_Name-1.2"),
        ("x" * 100, "x" * 80),
    ],
)
def test_sanitize_name(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "...", "//", "-.-"])
def test_sanitize_name_rejects_empty(raw: str) -> None:
    with pytest.raises(RegistryError, match="invalid run name"):
        sanitize_name(raw)


def test_status_heartbeat_and_config(reg: Registry) -> None:
    run = _new_run(reg)
    reg.heartbeat(run.id, env_steps=500, wall_seconds=12.5)
    reg.update_config(run.id, {"lr": 1e-3})
    reg.set_status(run.id, "failed", error="CUDA out of memory")
    failed = reg.get_run(run.id)
    assert (failed.env_steps, failed.wall_seconds, failed.config) == (500, 12.5, {"lr": 1e-3})
    assert failed.status == "failed" and failed.error == "CUDA out of memory" and failed.ended_at
    reg.set_status(run.id, "running")
    resumed = reg.get_run(run.id)
    assert resumed.status == "running" and resumed.error is None and resumed.ended_at is None
    with pytest.raises(RegistryError, match="invalid run status"):
        reg.set_status(run.id, "paused")
    with pytest.raises(RegistryError, match="no run 'missing'"):
        reg.heartbeat("missing")


def test_groups(reg: Registry) -> None:
    reg.ensure_group("abl", "ablation", {"variants": ["a", "b"]})
    reg.ensure_group("abl", "ablation")
    reg.ensure_group("seeds", "seeds")
    assert reg.group_names() == ["abl", "seeds"]
    with pytest.raises(RegistryError, match="already exists with kind"):
        reg.ensure_group("abl", "seeds")
    with pytest.raises(RegistryError, match="no group 'other'"):
        _new_run(reg, group="other")
    run = _new_run(reg, group="abl", variant="a")
    assert (run.group, run.variant) == ("abl", "a")


def test_delete_run_cascades(reg: Registry) -> None:
    keep, gone = _new_run(reg), _new_run(reg)
    for run in (keep, gone):
        reg.log_metrics(run.id, [(1, "loss", 0.5)])
        reg.add_checkpoint(run.id, step=1, path=f"{run.id}/ckpt.pt", bytes=10, sha256="0" * 64, kind="final")
        reg.add_evaluation(
            run.id, checkpoint="final", episodes=1, seed=0, deterministic=True, returns=[1.0], lengths=[5]
        )
    reg.delete_run(gone.id)
    assert [r.id for r in reg.list_runs()] == [keep.id]
    for table in ("metrics", "checkpoints", "evaluations"):
        assert _sql(reg, f"SELECT DISTINCT run_id FROM {table}") == [(keep.id,)]
    with pytest.raises(RegistryError, match="no run"):
        reg.delete_run(gone.id)


# ----- metrics -----


def test_batch_metrics_upsert_and_truncate(reg: Registry) -> None:
    run = _new_run(reg)
    rows = [(step, key, float(step)) for step in range(500, 0, -1) for key in ("return", "loss")]
    reg.log_metrics(run.id, rows, wall_time=123.0)
    stored = reg.metrics(run.id)
    assert len(stored) == 1000
    assert stored == sorted((s, k, v) for s, k, v in rows)
    assert reg.metric_keys(run.id) == ["loss", "return"]

    reg.log_metrics(run.id, [(10, "loss", -1.0), (10, "loss", -2.0), (501, "loss", 7.0)])
    loss = reg.metrics(run.id, "loss")
    assert len(loss) == 501
    assert loss[9] == (10, "loss", -2.0)

    assert reg.delete_metrics_after(run.id, 400) == 201
    assert max(step for step, _, _ in reg.metrics(run.id)) == 400
    with pytest.raises(RegistryError, match="no run"):
        reg.log_metrics("missing", [(1, "loss", 1.0)])


def test_portable_metric_replace_path(reg: Registry) -> None:
    run = _new_run(reg)
    reg.log_metrics(run.id, [(1, "loss", 1.0), (2, "loss", 2.0)])
    params = [{"run_id": run.id, "step": 2, "key": "loss", "value": 9.0, "wall_time": 0.0}]
    engine = create_engine(reg.url)
    with engine.begin() as conn:
        replace_metrics(conn, params)
    engine.dispose()
    assert reg.metrics(run.id) == [(1, "loss", 1.0), (2, "loss", 9.0)]


# ----- checkpoints and evaluations -----


def test_checkpoints(reg: Registry) -> None:
    run = _new_run(reg)
    for step, kind in ((200, "periodic"), (100, "periodic"), (200, "best")):
        reg.add_checkpoint(
            run.id, step=step, path=f"ckpt-{step}-{kind}.pt", bytes=step, sha256="ab", kind=kind
        )
    assert [(c.step, c.kind) for c in reg.checkpoints(run.id)] == [
        (100, "periodic"),
        (200, "periodic"),
        (200, "best"),
    ]
    reg.remove_checkpoint(run.id, "ckpt-200-periodic.pt")
    assert [c.path for c in reg.checkpoints(run.id)] == ["ckpt-100-periodic.pt", "ckpt-200-best.pt"]
    json.dumps([c.to_dict() for c in reg.checkpoints(run.id)])
    with pytest.raises(RegistryError, match="invalid checkpoint kind"):
        reg.add_checkpoint(run.id, step=1, path="x", bytes=1, sha256="ab", kind="latest")


def test_replace_checkpoint_is_idempotent(reg: Registry) -> None:
    """A checkpoint row written twice (a write kept through an outage, replayed after a crash) stays one row; a new
    best policy replaces the previous one, whatever its path."""
    run = _new_run(reg)
    reg.add_checkpoint(run.id, step=50, path="old-best.pt", bytes=1, sha256="ab", kind="best")
    for _ in range(2):
        reg.replace_checkpoint(run.id, step=100, path="step-100.pt", bytes=100, sha256="cd", kind="periodic")
        reg.replace_checkpoint(run.id, step=100, path="best-policy.pt", bytes=10, sha256="ef", kind="best")
    assert [(c.step, c.path, c.kind) for c in reg.checkpoints(run.id)] == [
        (100, "step-100.pt", "periodic"), (100, "best-policy.pt", "best")]
    with pytest.raises(RegistryError, match="no run 'nope'"):
        reg.replace_checkpoint("nope", step=1, path="x", bytes=1, sha256="ab", kind="final")


def test_evaluations(reg: Registry) -> None:
    run = _new_run(reg)
    info = reg.add_evaluation(
        run.id,
        checkpoint="best",
        episodes=2,
        seed=None,
        deterministic=False,
        returns=[1.0, 3.0],
        lengths=[10, 20],
    )
    assert (info.mean, info.std, info.seed, info.deterministic) == (2.0, 1.0, None, False)
    assert reg.evaluations(run.id) == [info]
    assert json.loads(json.dumps(info.to_dict()))["returns"] == [1.0, 3.0]
    with pytest.raises(RegistryError, match="one length per return"):
        reg.add_evaluation(
            run.id, checkpoint="best", episodes=1, seed=0, deterministic=True, returns=[1.0], lengths=[]
        )


# ----- liveness -----


def test_stale_heartbeat(reg: Registry) -> None:
    alive, dead, done = _new_run(reg), _new_run(reg), _new_run(reg)
    reg.set_status(done.id, "finished")
    long_ago = datetime(2001, 1, 1, tzinfo=timezone.utc)
    _sql(reg, _at("UPDATE runs SET heartbeat_at = :at WHERE id IN (:dead, :done)", "at"),
         at=long_ago, dead=dead.id, done=done.id)
    assert reg.get_run(dead.id).heartbeat_at == long_ago
    assert reg.get_run(alive.id).display_status == "running"
    stale = reg.get_run(dead.id)
    assert stale.display_status == "interrupted (stale)"
    assert stale.to_dict()["display_status"] == "interrupted (stale)"
    assert reg.get_run(done.id).display_status == "finished"
    later = alive.heartbeat_at + timedelta(seconds=121) if alive.heartbeat_at else None
    assert is_stale(alive, now=later)
    assert not is_stale(alive, now=later, timeout_s=600)


def test_a_status_is_stored_as_its_text_and_shown_with_a_separate_stale_flag(reg: Registry) -> None:
    """The status column holds the same strings as ever (old registries keep working); a record's status is a
    RunStatus, and the text `interrupted (stale)` comes from the status and the stale flag together."""
    run = _new_run(reg)
    assert run.status is RunStatus.RUNNING and f"{run.status}" == "running"
    reg.set_status(run.id, RunStatus.INTERRUPTED)
    assert _sql(reg, "SELECT status FROM runs") == [("interrupted",)]
    _sql(reg, "UPDATE runs SET status = 'failed'")  # as any earlier version wrote it
    assert reg.get_run(run.id).status is RunStatus.FAILED
    assert [r.id for r in reg.list_runs(status=RunStatus.FAILED)] == [run.id]
    stale = ShownStatus(RunStatus.RUNNING, stale=True)
    assert (str(stale), stale.status) == ("interrupted (stale)", RunStatus.INTERRUPTED)
    assert (str(ShownStatus(RunStatus.RUNNING)), ShownStatus(RunStatus.RUNNING).status) == ("running", "running")
    assert reg.get_run(run.id).to_dict()["status"] == "failed"


def test_a_checkpoint_label_is_its_kind_and_step_stored_as_text() -> None:
    label = CheckpointLabel("best", 300)
    assert str(label) == "best:300" and CheckpointLabel.parse(str(label)) == label
    assert CheckpointLabel.parse("periodic:1200") == CheckpointLabel("periodic", 1200)
    assert CheckpointLabel.parse("final") is None  # a row written by other means: no step


def test_to_dict_is_json(reg: Registry) -> None:
    data = json.loads(json.dumps(_new_run(reg, name="x").to_dict()))
    required = {"id", "name", "status", "group", "preset", "algo", "seed", "env_steps", "env_id", "variant"}
    required |= {"created_at", "started_at", "ended_at", "device", "version", "command", "error"}
    required |= {"target_steps", "wall_seconds", "config"}
    assert required <= data.keys()
    assert datetime.fromisoformat(data["created_at"]).tzinfo == timezone.utc


# ----- several processes -----

_BATCHES = 50
_ROWS_PER_BATCH = 20


def _write_from_process(args: tuple[str, int]) -> str:
    url, worker = args
    with Registry(url) as reg:
        run = _new_run(reg, name=f"worker-{worker}", seed=worker)
        for batch in range(_BATCHES):
            rows = [(batch * _ROWS_PER_BATCH + i, "loss", float(worker)) for i in range(_ROWS_PER_BATCH)]
            reg.log_metrics(run.id, rows)
            reg.heartbeat(run.id, env_steps=(batch + 1) * _ROWS_PER_BATCH)
        reg.set_status(run.id, "finished")
        return run.id


def test_concurrent_writer_processes(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        run_ids = pool.map(_write_from_process, [(url, worker) for worker in range(4)])
    with Registry(url) as reg:
        assert {r.id for r in reg.list_runs(status="finished")} == set(run_ids)
        for run_id in run_ids:
            assert len(reg.metrics(run_id)) == _BATCHES * _ROWS_PER_BATCH
            assert reg.get_run(run_id).env_steps == _BATCHES * _ROWS_PER_BATCH


def test_non_finite_metrics_are_left_out(reg: Registry) -> None:
    run = _new_run(reg)
    reg.log_metrics(run.id, [(10, "recall", float("nan")), (10, "loss", float("inf")), (10, "ok", 1.5)])
    assert reg.metrics(run.id) == [(10, "ok", 1.5)]


# ----- network filesystems -----

_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export/home /home nfs4 rw,relatime,vers=4.2,addr=10.0.0.1 0 0
/dev/sdb1 /home/alice/scratch xfs rw,relatime 0 0
//nas/lab\\040share /mnt/lab\\040share cifs rw,relatime,vers=3.1.1 0 0
alice@host:/data /mnt/remote fuse.sshfs rw,nosuid,nodev,relatime,user_id=1000 0 0
tmpfs /mnt/remote/cache tmpfs rw,relatime 0 0
/dev/sdc1 /srv ext4 rw,relatime 0 0
10.0.0.2@tcp:/lustre /srv lustre rw,flock 0 0
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/alice/runs/registry.db", "nfs4"),
        ("/home", "nfs4"),
        ("/home/alice/scratch/runs/registry.db", None),  # a local disk mounted inside the NFS home
        ("/homework/registry.db", None),  # not under /home: mount points match whole path components
        ("/mnt/lab share/runs/registry.db", "cifs"),  # \\040 in /proc/mounts is a space
        ("/mnt/remote/runs/registry.db", "fuse.sshfs"),
        ("/mnt/remote/cache/registry.db", None),
        ("/srv/runs/registry.db", "lustre"),  # the later of two mounts on one point hides the earlier
        ("/var/runs/registry.db", None),
    ],
)
def test_network_filesystem(path: str, expected: str | None) -> None:
    assert network_filesystem(Path(path), _MOUNTS) == expected


def test_network_filesystem_without_mount_information(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert network_filesystem(tmp_path, "") is None
    real_read_text = Path.read_text

    def no_proc_mounts(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == Path("/proc/mounts"):
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc_mounts)
    assert network_filesystem(tmp_path) is None


def test_sqlite_on_a_network_filesystem_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Registry.open(tmp_path / "runs") as local:
        assert local.warning is None
    monkeypatch.setattr(registry_sqlite, "network_filesystem", lambda path: "nfs4")
    with Registry.open(tmp_path / "runs") as shared:
        assert shared.warning is not None and "\n" not in shared.warning
        assert shared.warning.startswith(f"registry {tmp_path / 'runs' / 'registry.db'} is on a network filesystem "
                                         "(nfs4): SQLite's locking is unreliable there")
        assert "MBPO_REGISTRY_URL=postgresql+psycopg://" in shared.warning


# ----- PostgreSQL -----


def _open_at_once(url: str, barrier: Barrier, results: "Queue[str]", worker: int) -> None:
    barrier.wait()
    try:
        with Registry(url) as reg:
            _new_run(reg, name=f"worker-{worker}")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"worker {worker}: {type(exc).__name__}: {exc}")
    else:
        results.put("ok")


def test_many_processes_create_a_postgresql_schema_at_once(postgres_url: str) -> None:
    """8 processes that open a new database together all succeed: one creates the schema, the others wait."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    workers = [ctx.Process(target=_open_at_once, args=(postgres_url, barrier, results, i)) for i in range(8)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok"] * 8
    with Registry(postgres_url) as reg:
        assert sorted(r.name for r in reg.list_runs()) == [f"worker-{i}" for i in range(8)]
        assert _sql(reg, "SELECT id, version FROM schema_version") == [(1, SCHEMA_VERSION)]


def _wait_for_a_blocked_writer(reg: Registry, url: str) -> None:
    """Wait until a registry call waits for the lock of another transaction (on SQLite, just give it time)."""
    if not url.startswith("postgresql"):
        time.sleep(0.5)
        return
    deadline = time.monotonic() + 30
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    while _sql(reg, query) == [(0,)]:
        assert time.monotonic() < deadline, "the registry call never waited for the other transaction"
        time.sleep(0.02)


@pytest.mark.parametrize(("kind", "error"), [("seeds", None), ("ablation", "already exists with kind 'seeds'")])
def test_a_concurrent_insert_of_the_same_key_is_seen(reg: Registry, url: str, kind: str, error: str | None) -> None:
    """Another process inserts group `g` between this call's check and its insert: the call sees that group, as
    when it came first (PostgreSQL reports a unique violation, which is retried; SQLite waits for the lock)."""
    failures: list[Exception] = []

    def ensure() -> None:
        try:
            reg.ensure_group("g", kind)
        except RegistryError as exc:
            failures.append(exc)

    engine = create_engine(url)
    with engine.connect() as other:
        other.execute(_at("INSERT INTO groups (name, kind, created_at, info) VALUES ('g', 'seeds', :at, '{}')", "at"),
                      {"at": datetime.now(timezone.utc)})
        caller = threading.Thread(target=ensure)
        caller.start()
        _wait_for_a_blocked_writer(reg, url)
        other.commit()
    engine.dispose()
    caller.join(timeout=60)
    assert [str(e) for e in failures] == ([] if error is None else [f"group 'g' {error}, not 'ablation'"])
    assert reg.group_info("g") == {"kind": "seeds", "info": {}}


def test_a_postgresql_deadlock_is_retried(postgres_url: str) -> None:
    """Another transaction holds a metric row of the run and then wants the run's row, which `delete_run` holds
    while its cascade waits for that metric row: PostgreSQL aborts `delete_run` as the deadlock's victim, and it
    succeeds on retry once the other transaction commits."""
    reg = Registry(postgres_url)
    run = _new_run(reg)
    reg.log_metrics(run.id, [(1, "loss", 1.0)])
    failures: list[Exception] = []

    def delete() -> None:
        try:
            reg.delete_run(run.id)
        except RegistryError as exc:
            failures.append(exc)

    engine = create_engine(reg.url)
    with engine.connect() as other:
        other.execute(text("SET deadlock_timeout = '60s'"))  # so that the registry's transaction is the victim
        other.execute(text("UPDATE metrics SET value = 2 WHERE run_id = :id"), {"id": run.id})
        caller = threading.Thread(target=delete)
        caller.start()
        _wait_for_a_blocked_writer(reg, reg.url)
        other.execute(text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": run.id})
        other.commit()
    engine.dispose()
    caller.join(timeout=60)
    assert failures == []
    assert reg.list_runs() == []
    reg.close()


def test_64_bit_integers(reg: Registry) -> None:
    big = 5 * 2**30
    run = _new_run(reg, seed=2**32 - 1, target_steps=big)
    reg.heartbeat(run.id, env_steps=big)
    reg.log_metrics(run.id, [(big, "loss", 1.0)])
    reg.add_checkpoint(run.id, step=big, path="ckpt.pt", bytes=big, sha256="ab", kind="final")
    stored = reg.get_run(run.id)
    assert (stored.seed, stored.env_steps, stored.target_steps) == (2**32 - 1, big, big)
    assert reg.metrics(run.id) == [(big, "loss", 1.0)]
    assert [(c.step, c.bytes) for c in reg.checkpoints(run.id)] == [(big, big)]


def test_a_postgresql_connection_the_server_dropped_is_replaced(postgres_url: str) -> None:
    """The server ends the registry's idle pooled connection (a restart, an idle timeout during a long epoch): the
    next call connects again."""
    with Registry(postgres_url) as reg:
        run = _new_run(reg)
        ended = _sql(reg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert ended == [(True,)]
        reg.heartbeat(run.id, env_steps=5)
        assert reg.get_run(run.id).env_steps == 5


def test_missing_postgresql_driver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails as if it were not installed
    with pytest.raises(RegistryError) as info:
        Registry("postgresql+psycopg://mbpo:secret@/runs?host=/run/mbpo")
    assert str(info.value) == ("registry URL postgresql+psycopg://mbpo:***@/runs?host=%2Frun%2Fmbpo needs the "
                               "PostgreSQL driver: pip install 'mbpo-cli[postgres]'")


def test_unreachable_postgresql_server_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    nowhere = tmp_path / "no-server"
    with pytest.raises(RegistryError) as info:
        Registry(f"postgresql+psycopg://mbpo:secret@/runs?host={nowhere}")
    message = str(info.value)
    assert message.startswith("registry postgresql+psycopg://mbpo:***@/runs?host=")
    assert "\n" not in message and "secret" not in message
    assert f"{nowhere}/.s.PGSQL.5432" in message and "No such file or directory" in message


def test_credentials_are_masked_in_any_text() -> None:
    """Driver messages may quote the connection string back: its secrets go, whatever their form."""
    text = ("connection to 'host=h password=hunt3r2 sslpassword=\"k3y pass\"' failed; dsn postgresql://u:hunt3r2@h/db;"
            " echoed s3cr3t and s%40cr%2Ft; PWD=odbc-pw;")
    shown = masked(text, ("s3cr3t", "s@cr/t"))
    assert shown == ("connection to 'host=h password=*** sslpassword=***' failed; dsn postgresql://u:***@h/db; echoed "
                     "*** and ***; PWD=***;")


def test_postgresql_registry_hides_the_password(postgres_url: str) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:secret@") + "&sslpassword=secret2"  # trust: ignored
    with Registry(with_password) as reg:
        assert reg.where.startswith("postgresql+psycopg://postgres:***@/mbpo_test_")
        assert "sslpassword=***" in reg.where and "secret" not in reg.where
        assert reg.warning is None
        with pytest.raises(RegistryError) as info:
            reg.get_run("nope")
    assert "secret" not in str(info.value)
