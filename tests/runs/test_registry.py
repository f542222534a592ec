"""Tests for the run registry (mbpo_cli.registry)."""

import json
import multiprocessing
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from mbpo_cli.runs import registry as registry_module
from mbpo_cli.runs.registry import (
    SCHEMA_VERSION,
    Registry,
    RegistryError,
    RunInfo,
    default_url,
    is_stale,
    sanitize_name,
)


@pytest.fixture(autouse=True)
def _no_registry_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.open(tmp_path / "runs")
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


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "runs" / "registry.db")


# ----- schema -----


def test_open_creates_tables_version_and_wal(reg: Registry, tmp_path: Path) -> None:
    with _db(tmp_path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"schema_version", "groups", "runs", "metrics", "checkpoints", "evaluations"} <= tables
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopen_keeps_runs_and_single_version_row(reg: Registry, tmp_path: Path) -> None:
    run = _new_run(reg)
    with Registry.open(tmp_path / "runs") as again:
        assert again.get_run(run.id) == run
    with _db(tmp_path) as db:
        assert db.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)


def test_newer_schema_version_is_refused(reg: Registry, tmp_path: Path) -> None:
    with _db(tmp_path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(RegistryError, match="newer than this program's") as info:
        Registry.open(tmp_path / "runs")
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
    monkeypatch.setattr(registry_module.secrets, "token_hex", lambda _n: next(ids))
    one = _new_run(reg)
    two = _new_run(reg)
    assert (one.id, two.id) == ("abcd0001", "abcd0002")  # the colliding id was regenerated
    with pytest.raises(RegistryError, match="ambiguous"):
        reg.get_run("abcd")
    assert reg.get_run("abcd0002") == two
    with pytest.raises(RegistryError, match=r"no run 'nope' in .*registry\.db"):
        reg.get_run("nope")
    with pytest.raises(RegistryError, match="no run 'abc'"):
        reg.get_run("abc")  # too short to be a prefix


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


def test_delete_run_cascades(reg: Registry, tmp_path: Path) -> None:
    keep, gone = _new_run(reg), _new_run(reg)
    for run in (keep, gone):
        reg.log_metrics(run.id, [(1, "loss", 0.5)])
        reg.add_checkpoint(run.id, step=1, path=f"{run.id}/ckpt.pt", bytes=10, sha256="0" * 64, kind="final")
        reg.add_evaluation(
            run.id, checkpoint="final", episodes=1, seed=0, deterministic=True, returns=[1.0], lengths=[5]
        )
    reg.delete_run(gone.id)
    assert [r.id for r in reg.list_runs()] == [keep.id]
    with _db(tmp_path) as db:
        for table in ("metrics", "checkpoints", "evaluations"):
            assert db.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall() == [(keep.id,)]
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


def test_portable_metric_replace_path(reg: Registry, tmp_path: Path) -> None:
    run = _new_run(reg)
    reg.log_metrics(run.id, [(1, "loss", 1.0), (2, "loss", 2.0)])
    params = [{"run_id": run.id, "step": 2, "key": "loss", "value": 9.0, "wall_time": 0.0}]
    engine = create_engine(reg.url)
    with engine.begin() as conn:
        registry_module._replace_metrics(conn, params)
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


def test_stale_heartbeat(reg: Registry, tmp_path: Path) -> None:
    alive, dead, done = _new_run(reg), _new_run(reg), _new_run(reg)
    reg.set_status(done.id, "finished")
    with _db(tmp_path) as db:
        db.execute(
            "UPDATE runs SET heartbeat_at = '2001-01-01 00:00:00.000000' WHERE id IN (?, ?)",
            (dead.id, done.id),
        )
    assert reg.get_run(alive.id).display_status == "running"
    stale = reg.get_run(dead.id)
    assert stale.display_status == "interrupted (stale)"
    assert stale.to_dict()["display_status"] == "interrupted (stale)"
    assert reg.get_run(done.id).display_status == "finished"
    later = alive.heartbeat_at + timedelta(seconds=121) if alive.heartbeat_at else None
    assert is_stale(alive, now=later)
    assert not is_stale(alive, now=later, timeout_s=600)


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


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    url = default_url(tmp_path / "runs")
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
