"""Tests for the `mbpo` command line (mbpo_cli.cli): bad input, JSON output, runs commands, failures.

Training runs here are tiny (300 env steps, small networks, one thread) so that the file runs in seconds.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from clihelpers import TINY, mbpo, one_error_line, runner
from rich.console import Console

from mbpo_cli import __version__
from mbpo_cli.cli import common
from mbpo_cli.cli import runs as runs_command
from mbpo_cli.cli.app import app
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.runs.process import run_lock
from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.registry import sqlite as registry_sqlite

EVAL_STEPS = [100, 200, 300]


def tree(folder: Path) -> set[str]:
    """Every file and folder under `folder` (SQLite's -wal/-shm side files left out)."""
    if not folder.exists():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


def run_ids(runs_dir: Path) -> list[str]:
    with Registry.open(runs_dir) as registry:
        return sorted(r.id for r in registry.list_runs())


def fake_run(runs_dir: Path, *, status: str = "finished", preset: str = "inverted_pendulum") -> str:
    """A registry row, two eval metrics and a run folder, without training."""
    config = resolve_config(preset=preset)
    with Registry.open(runs_dir) as registry:
        run = registry.create_run(name=None, preset=preset, env_id=config.env.id, algo=config.label, seed=0,
                                  config=config.to_dict(), device="cpu", command="mbpo train", target_steps=500)
        registry.log_metrics(run.id, [(250, "eval_return", 10.0), (500, "eval_return", 20.0)])
        registry.heartbeat(run.id, env_steps=500, wall_seconds=1.0)
        registry.set_status(run.id, status)
    folder = runs_dir / run.id
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text("{}\n")
    return run.id


# ---------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 2, nothing written
# ---------------------------------------------------------------------------------------------


def _file(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


BAD_INPUTS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "unknown preset": (lambda t: ["train", "--preset", "nope"], "unknown preset 'nope'"),
    "missing config file": (lambda t: ["train", "--config", str(t / "missing.yaml")], "missing.yaml: no such config"),
    "bad yaml": (lambda t: ["train", "--config", _file(t, "bad.yaml", "train: [1,\n")], "bad.yaml: invalid YAML"),
    "unknown key in file": (
        lambda t: ["train", "--config", _file(t, "key.yaml", "base: hopper\ntrain:\n  stepz: 5\n")],
        "key.yaml: train.stepz: unknown key",
    ),
    "unknown top-level key": (
        lambda t: ["train", "--config", _file(t, "top.yaml", "trian: {}\n")], "top.yaml: trian: unknown key",
    ),
    "unknown key in --set": (lambda t: ["train", "--preset", "hopper", "--set", "sac.gg=1"], "sac.gg: unknown key"),
    "wrong type in file": (
        lambda t: ["train", "--config", _file(t, "type.yaml", "train:\n  steps: many\n")],
        "type.yaml: train.steps: expected an integer",
    ),
    "bool for int in --set": (
        lambda t: ["train", "--preset", "hopper", "--set", "model.hidden=yes"], "model.hidden: expected an integer",
    ),
    "negative steps": (lambda t: ["train", "--preset", "hopper", "--steps", "-5"], "train.steps: must be positive"),
    "real_ratio out of range": (
        lambda t: ["train", "--preset", "hopper", "--set", "agent.real_ratio=1.5"],
        "agent.real_ratio: must be in [0, 1]",
    ),
    "bad --set syntax": (lambda t: ["train", "--preset", "hopper", "--set", "sac"], "expected KEY=VALUE"),
    "bad algo": (lambda t: ["train", "--preset", "hopper", "--algo", "ppo"], "--algo"),
    "two sources": (lambda t: ["train", "--preset", "hopper", "--env", "Hopper-v5"], "choose one of"),
    "no source": (lambda t: ["train"], "choose a task"),
    "unknown env id": (lambda t: ["train", "--env", "NoSuchEnv-v0"], "NoSuchEnv"),
    "unknown env id in a file": (
        lambda t: ["train", "--config", _file(t, "env.yaml", "env:\n  id: NoSuchEnv-v0\n")], "NoSuchEnv",
    ),
    "bad env kwargs": (
        lambda t: ["train", "--config", _file(t, "kw.yaml", "env:\n  kwargs: {no_such_option: 1}\n")],
        "env.kwargs",
    ),
    "continuous agent on a discrete task": (
        lambda t: ["train", "--env", "CartPole-v1", "--set", "agent.name=td3"],
        "agent.name: td3 needs a continuous action space but CartPole-v1 has Discrete(2): use --set agent.name=dqn",
    ),
    "dqn on a continuous task": (
        lambda t: ["train", "--preset", "hopper", "--set", "agent.name=dqn"],
        "agent.name: dqn needs a discrete action space but Hopper-v5 has Box(3): use --set agent.name=sac",
    ),
    "known termination of a task without one": (
        lambda t: ["train", "--config", _file(t, "cp.yaml", "env:\n  id: CartPole-v1\nagent:\n  name: dqn\n")],
        "env.termination: known: CartPole-v1 has no known termination function; use learned, never or module:function",
    ),
    "custom termination that cannot be imported": (
        lambda t: ["train", "--preset", "hopper", "--set", "env.termination=no_such_module_xyz:done"],
        "env.termination: cannot import 'no_such_module_xyz'",
    ),
    "a CUDA device set in the config, on a machine without CUDA": (
        lambda t: ["train", "--preset", "hopper", "--set", "train.device=cuda:0"],
        "error: train.device cuda:0: device 'cuda:0' requested but CUDA is not available here",
    ) if not torch.cuda.is_available() else (lambda t: ["train", "--preset", "hopper", "--set", "train.device=cuda:x"],
                                             "train.device: expected auto, cpu, cuda or cuda:N"),
    "show unknown run": (lambda t: ["runs", "show", "nope"], "no run 'nope'"),
    "resume unknown run": (lambda t: ["resume", "nope"], "no run 'nope'"),
    "delete unknown run": (lambda t: ["runs", "delete", "nope", "--yes"], "no run 'nope'"),
    "bad status filter": (lambda t: ["runs", "list", "--status", "done"], "--status"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_with_no_registry_writes_nothing(tmp_path: Path, case: str) -> None:
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert expected in one_error_line(result)
    assert result.stdout == ""
    assert not runs_dir.exists()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_with_a_registry_adds_no_run(tmp_path: Path, case: str) -> None:
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    runs_dir = tmp_path / "runs"
    existing = fake_run(runs_dir)
    before = tree(runs_dir)
    result = mbpo(runs_dir, *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert expected in one_error_line(result)
    assert run_ids(runs_dir) == [existing]
    assert tree(runs_dir) == before


def test_runs_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = mbpo(blocker / "runs", "train", *TINY)
    assert result.exit_code == 2
    assert "cannot write runs directory" in one_error_line(result)
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_registry_url_that_cannot_be_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBPO_REGISTRY_URL", "nosuchdb://x")
    result = mbpo(tmp_path / "runs", "train", *TINY)
    assert result.exit_code == 2
    assert "MBPO_REGISTRY_URL" in one_error_line(result)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite://", "is an in-memory database: nothing would be kept"),
    ("sqlite:////nonexistent/dir/x.db", "names /nonexistent/dir/x.db, whose folder /nonexistent/dir does not exist"),
])
def test_registry_urls_that_would_lose_runs_or_invent_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              url: str, message: str) -> None:
    monkeypatch.setenv("MBPO_REGISTRY_URL", url)
    assert message in one_error_line(mbpo(tmp_path / "runs", "train", *TINY))
    assert not (tmp_path / "runs").exists() and not Path("/nonexistent").exists()


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://mbpo:s3cr3t-pw@/runs?host={nowhere}",
    "postgresql+psycopg://mbpo@/runs?host={nowhere}&password=s3cr3t-pw",
    "postgresql+psycopg://mbpo@/runs?password=s3cr3t-pw&host={nowhere}&password=s3cr3t-pw2",
    "postgresql+psycopg://mbpo@/runs?host={nowhere}&sslpassword=s3cr3t-pw",
    "postgresql+psycopg://mbpo:s3cr3t-pw@/runs?host={nowhere}&bogus_option=1",
    "sqlite://?password=s3cr3t-pw",
])
def test_registry_errors_never_show_a_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """A password in the URL's userinfo or in its query (libpq takes `password` and `sslpassword` there), shown
    as *** in every error about a real registry URL that cannot be used."""
    pytest.importorskip("psycopg")
    monkeypatch.setenv("MBPO_REGISTRY_URL", url.format(nowhere=tmp_path / "no-server"))
    for args in (["runs", "list"], ["train", *TINY]):
        line = one_error_line(mbpo(tmp_path / "runs", *args))
        assert "s3cr3t" not in line and "***" in line, line


@pytest.mark.parametrize("value", ["soon", "-5", "inf"])
def test_a_bad_registry_outage_limit_is_refused_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               value: str) -> None:
    monkeypatch.setenv("MBPO_REGISTRY_OUTAGE_SECONDS", value)
    line = one_error_line(mbpo(tmp_path / "runs", "train", *TINY))
    assert line == f"error: $MBPO_REGISTRY_OUTAGE_SECONDS: expected a number of seconds >= 0, got {value!r}"
    with Registry.open(tmp_path / "runs") as registry:
        assert registry.list_runs() == []


def test_a_registry_file_that_is_not_sqlite(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "registry.db").write_text("these are my notes, not a database\n")
    for args in (["runs", "list"], ["train", *TINY]):
        line = one_error_line(mbpo(runs_dir, *args))
        assert line == f"error: registry {runs_dir / 'registry.db'}: file is not a database"
    assert (runs_dir / "registry.db").read_text() == "these are my notes, not a database\n"


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = mbpo(tmp_path / "runs", "train", "--no-such-option")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_runs_list_without_a_registry_creates_nothing(tmp_path: Path) -> None:
    result = mbpo(tmp_path / "runs", "runs", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# --version and --help
# ---------------------------------------------------------------------------------------------


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mbpo {__version__}"


@pytest.mark.parametrize(
    "command", [[], ["train"], ["resume"], ["runs"], ["runs", "list"], ["runs", "show"], ["runs", "delete"]],
    ids=lambda c: " ".join(c) or "mbpo",
)
def test_help_shows_examples(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Example" in text
    after = text[text.index("Example"):]
    assert f"mbpo {' '.join(command)}".strip() in after


def test_train_help_lists_the_presets() -> None:
    text = runner.invoke(app, ["train", "--help"]).stdout
    for name in ("hopper", "humanoid", "inverted_pendulum"):
        assert name in text


# ---------------------------------------------------------------------------------------------
# A real (tiny) run and the runs commands
# ---------------------------------------------------------------------------------------------


class Trained(types.SimpleNamespace):
    runs_dir: Path
    summary: dict
    failed_id: str


def _fail_training(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("boom: the engine broke\nsecond line of detail")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One finished tiny run (via `train --json`) and one failed run in the same registry."""
    runs_dir = tmp_path_factory.mktemp("trained") / "runs"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MBPO_REGISTRY_URL", raising=False)
        result = mbpo(runs_dir, "train", *TINY, "--json", "--name", "tiny-finished")
        assert result.exit_code == 0, result.output
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1, result.stdout
        summary = json.loads(lines[0])
        mp.setattr("mbpo_cli.runs.session.train", _fail_training)
        failed = mbpo(runs_dir, "train", *TINY, "--json", "--preset", "inverted_pendulum", "--name", "tiny failed")
    assert failed.exit_code == 1, failed.output
    assert "note: run name 'tiny failed' is stored as 'tiny-failed'" in failed.stderr  # said, not silent
    with Registry.open(runs_dir) as registry:
        failed_id = registry.get_run("tiny-failed").id
    torch.set_num_threads(threads)
    yield Trained(runs_dir=runs_dir, summary=summary, failed_id=failed_id)


def test_train_json_prints_one_object(trained: Trained) -> None:
    summary = trained.summary
    assert isinstance(summary, dict)
    assert summary["status"] == "finished"
    assert summary["env_steps"] == 300
    assert summary["name"] == "tiny-finished"
    assert summary["env"] == "InvertedPendulum-v5"
    assert summary["algo"] == "mbpo"
    with Registry.open(trained.runs_dir) as registry:
        run = registry.get_run(summary["id"])
    assert run.id == summary["id"]
    assert run.status == "finished"
    assert run.env_steps == 300
    assert Path(summary["run_dir"]).name == run.id


def test_runs_list_json(trained: Trained) -> None:
    result = mbpo(trained.runs_dir, "runs", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["id"] for r in rows} == {trained.summary["id"], trained.failed_id}
    for row in rows:
        assert {"id", "name", "status", "group", "preset", "algo", "seed", "env_steps"} <= set(row)
    finished = next(r for r in rows if r["id"] == trained.summary["id"])
    assert (finished["status"], finished["preset"], finished["algo"], finished["seed"], finished["env_steps"]) == (
        "finished", "inverted_pendulum", "mbpo", 0, 300)
    assert finished["group"] is None


@pytest.mark.parametrize("status", ["finished", "failed", "running", "interrupted"])
def test_runs_list_status_filter(trained: Trained, status: str) -> None:
    result = mbpo(trained.runs_dir, "runs", "list", "--status", status, "--json")
    assert result.exit_code == 0, result.stderr
    ids = [r["id"] for r in json.loads(result.stdout)]
    expected = {"finished": [trained.summary["id"]], "failed": [trained.failed_id]}.get(status, [])
    assert ids == expected


def test_runs_list_preset_filter(trained: Trained) -> None:
    result = mbpo(trained.runs_dir, "runs", "list", "--preset", "hopper", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_runs_list_table_keeps_ids_whole_at_80_columns(trained: Trained) -> None:
    result = mbpo(trained.runs_dir, "runs", "list")
    assert result.exit_code == 0, result.stderr
    assert trained.summary["id"] in result.stdout
    assert trained.failed_id in result.stdout


def test_runs_list_table_wide(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(width=200))
    result = mbpo(trained.runs_dir, "runs", "list")
    assert result.exit_code == 0, result.stderr
    for text in ("tiny-finished", "tiny-failed", "finished", "failed", "300/300", "InvertedPendulum-v5"):
        assert text in result.stdout


def test_runs_show_json(trained: Trained) -> None:
    run_id = trained.summary["id"]
    result = mbpo(trained.runs_dir, "runs", "show", run_id[:5], "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"id", "name", "status", "env_steps", "config", "evals"} <= set(data)
    assert (data["id"], data["name"], data["status"], data["env_steps"]) == (run_id, "tiny-finished", "finished", 300)
    assert data["config"]["train"]["steps"] == 300
    assert data["config"]["model"]["hidden"] == 32
    assert isinstance(data["evals"], list)
    assert [e["step"] for e in data["evals"]] == EVAL_STEPS
    for entry in data["evals"]:
        assert set(entry) == {"step", "return"}
        assert isinstance(entry["return"], float)
    assert data["evals"][-1]["return"] == trained.summary["final_eval_return"]


def test_runs_show_table_by_name(trained: Trained) -> None:
    result = mbpo(trained.runs_dir, "runs", "show", "tiny-finished")
    assert result.exit_code == 0, result.stderr
    assert trained.summary["id"] in result.stdout
    assert "Evaluation returns" in result.stdout


def test_resume_of_a_finished_run_needs_more_steps(trained: Trained) -> None:
    before = tree(trained.runs_dir)
    result = mbpo(trained.runs_dir, "resume", trained.summary["id"])
    assert result.exit_code == 2
    assert "is finished" in one_error_line(result)
    assert tree(trained.runs_dir) == before


# ---------------------------------------------------------------------------------------------
# Internal failures: the run is marked failed, exit 1, no traceback unless --debug
# ---------------------------------------------------------------------------------------------


def test_failed_run_is_recorded(trained: Trained) -> None:
    with Registry.open(trained.runs_dir) as registry:
        run = registry.get_run(trained.failed_id)
    assert run.status == "failed"
    assert run.error == "RuntimeError: boom: the engine broke"
    assert (trained.runs_dir / run.id / "config.yaml").is_file()


def test_internal_failure_exits_1_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mbpo_cli.runs.session.train", _fail_training)
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", *TINY, "--json")
    assert result.stdout == ""
    line = one_error_line(result, code=1)
    assert "RuntimeError: boom: the engine broke" in line
    assert "--debug" in line
    [run] = json.loads(mbpo(runs_dir, "runs", "list", "--json").stdout)
    assert run["status"] == "failed"
    assert run["error"] == "RuntimeError: boom: the engine broke"


def test_internal_failure_after_the_progress_display(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --json the progress header comes first; the error is still one whole line of its own."""
    monkeypatch.setattr("mbpo_cli.runs.session.train", _fail_training)
    result = mbpo(tmp_path / "runs", "train", *TINY)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: RuntimeError: boom: the engine broke"), result.stderr
    assert sum("error" in line for line in lines) == 1


def test_internal_failure_with_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mbpo_cli.runs.session.train", _fail_training)
    result = runner.invoke(app, ["--debug", "--runs-dir", str(tmp_path / "runs"), "train", *TINY, "--json"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "_fail_training" in result.stderr
    assert "RuntimeError" in result.stderr.strip().splitlines()[-1]


def test_bad_input_with_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "--runs-dir", str(tmp_path / "runs"), "train", "--preset", "nope"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# runs delete
# ---------------------------------------------------------------------------------------------


def test_runs_delete_yes_removes_rows_and_folder(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    keep = fake_run(runs_dir)
    gone = fake_run(runs_dir, status="failed")
    result = mbpo(runs_dir, "runs", "delete", gone, "--yes")
    assert result.exit_code == 0, result.stderr
    assert gone in result.stdout
    assert not (runs_dir / gone).exists()
    assert (runs_dir / keep).is_dir()
    assert run_ids(runs_dir) == [keep]
    with Registry.open(runs_dir) as registry:
        assert registry.metrics(gone) == []
        assert len(registry.metrics(keep, "eval_return")) == 2
    assert mbpo(runs_dir, "runs", "show", gone).exit_code == 2


def test_runs_delete_without_yes_refuses_when_not_interactive(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    run_id = fake_run(runs_dir)
    before = tree(runs_dir)
    result = mbpo(runs_dir, "runs", "delete", run_id)
    assert result.exit_code == 2
    assert "--yes" in one_error_line(result)
    assert run_ids(runs_dir) == [run_id]
    assert tree(runs_dir) == before


def _interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_stdin = types.SimpleNamespace(isatty=lambda: True)
    monkeypatch.setattr(runs_command, "sys", types.SimpleNamespace(stdin=fake_stdin))


def test_runs_delete_asks_and_can_be_declined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs_dir = tmp_path / "runs"
    run_id = fake_run(runs_dir)
    _interactive(monkeypatch)
    result = mbpo(runs_dir, "runs", "delete", run_id, input="n\n")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "error:" not in result.output
    assert run_ids(runs_dir) == [run_id]
    assert (runs_dir / run_id).is_dir()


def test_runs_delete_asks_and_deletes_on_yes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs_dir = tmp_path / "runs"
    run_id = fake_run(runs_dir)
    _interactive(monkeypatch)
    result = mbpo(runs_dir, "runs", "delete", run_id, input="y\n")
    assert result.exit_code == 0, result.output
    assert run_ids(runs_dir) == []
    assert not (runs_dir / run_id).exists()


def test_runs_delete_refuses_a_running_run(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    run_id = fake_run(runs_dir, status="running")
    with run_lock(runs_dir / run_id):
        result = mbpo(runs_dir, "runs", "delete", run_id, "--yes")
    assert result.exit_code == 2
    assert "running in another process" in one_error_line(result)
    assert run_ids(runs_dir) == [run_id]


def test_runs_dir_from_the_environment(tmp_path: Path) -> None:
    runs_dir = tmp_path / "elsewhere"
    run_id = fake_run(runs_dir)
    result = runner.invoke(app, ["runs", "list", "--json"], env={"MBPO_RUNS_DIR": str(runs_dir)})
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == [run_id]


def test_a_registry_on_a_network_filesystem_is_warned_about_on_stderr(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite registry on NFS: one warning line on stderr, the JSON on stdout as usual."""
    runs_dir = tmp_path / "runs"
    run_id = fake_run(runs_dir)
    monkeypatch.setattr(registry_sqlite, "network_filesystem", lambda path: "nfs4")
    result = mbpo(runs_dir, "runs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == [run_id]
    assert result.stderr.splitlines() == [
        f"warning: registry {runs_dir / 'registry.db'} is on a network filesystem (nfs4): SQLite's locking is "
        "unreliable there; share a PostgreSQL registry instead: MBPO_REGISTRY_URL=postgresql+psycopg://..."
    ]


def test_the_registry_warning_is_printed_once_per_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(registry_sqlite, "network_filesystem", lambda path: "cifs")
    monkeypatch.setattr(common, "err", Console(stderr=True, width=1000))
    ctx = types.SimpleNamespace(obj=common.Globals(runs_dir=tmp_path / "runs", debug=False))
    for _ in range(2):
        common.open_registry(ctx).close()  # type: ignore[arg-type]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: registry ") and "(cifs)" in lines[0]


# ---------------------------------------------------------------------------------------------
# The installed console script, in a real subprocess
# ---------------------------------------------------------------------------------------------


def _console_script() -> str:
    found = shutil.which("mbpo")
    if found is None:
        found = str(Path(sys.executable).parent / "mbpo")
    assert Path(found).exists(), "the mbpo console script is not installed"
    return found


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MBPO_REGISTRY_URL", "MBPO_RUNS_DIR")}
    env["COLUMNS"] = "120"
    return env


def test_console_script_trains_a_tiny_run(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    proc = subprocess.run([_console_script(), "--runs-dir", str(runs_dir), "train", *TINY, "--seed", "3"],
                          capture_output=True, text=True, timeout=300, env=_subprocess_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    with Registry.open(runs_dir) as registry:
        [run] = registry.list_runs()
        evals = registry.metrics(run.id, "eval_return")
        checkpoints = registry.checkpoints(run.id)
    assert run.status == "finished"
    assert run.env_steps == 300 and run.target_steps == 300
    assert run.seed == 3
    assert run.error is None
    assert run.id in proc.stdout
    assert [step for step, _, _ in evals] == EVAL_STEPS
    folder = runs_dir / run.id
    assert (folder / "config.yaml").is_file()
    assert "train --preset inverted_pendulum" in (folder / "command.txt").read_text()
    assert (folder / "checkpoints").is_dir()
    assert any((folder / "checkpoints").glob("*.pt"))
    assert {c.kind for c in checkpoints} >= {"final"}
    final = next(c for c in checkpoints if c.kind == "final")
    assert final.step == 300 and (runs_dir / final.path).is_file() and not Path(final.path).is_absolute()


def test_console_script_bad_input(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    proc = subprocess.run([_console_script(), "--runs-dir", str(runs_dir), "train", "--env", "CartPole-v1", "--set",
                           "agent.name=sac"], capture_output=True, text=True, timeout=120, env=_subprocess_env(),
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: agent.name: sac needs a continuous action space")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
    assert not runs_dir.exists()


def test_a_discrete_task_from_env_trains_evaluates_and_is_listed(tmp_path: Path) -> None:
    """`--env CartPole-v1`: DQN and the learned termination by default (said on stderr), a run recorded as
    mbpo-dqn, whose greedy and epsilon-greedy policies `mbpo eval` replays from the best-policy file."""
    runs_dir = tmp_path / "runs"
    sets = ["train.init_steps=100", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
            "agent.updates_per_step=1", "agent.batch_size=32", "dqn.hidden=32", "rollout.batch_size=200",
            "model.max_epochs=5", "model.hidden=32", "done_model.max_epochs=5"]
    result = mbpo(runs_dir, "train", "--env", "CartPole-v1", "--steps", "300", "--json",
                  *(arg for item in sets for arg in ("--set", item)))
    assert result.exit_code == 0, result.output
    assert "env.termination: learned (CartPole-v1 has no known termination function" in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["algo"], summary["env"], summary["status"]) == ("mbpo-dqn", "CartPole-v1", "finished")
    with Registry.open(runs_dir) as registry:
        run = registry.get_run(summary["id"])
        recall = registry.metrics(run.id, "done_holdout_recall")
        epsilon = registry.metrics(run.id, "epsilon")
    assert (run.config["agent"]["name"], run.config["env"]["termination"]) == ("dqn", "learned")
    assert recall and epsilon and epsilon[-1][2] < epsilon[0][2]
    greedy = mbpo(runs_dir, "eval", run.id, "--checkpoint", "best", "--episodes", "2", "--json")
    assert greedy.exit_code == 0, greedy.output
    explored = mbpo(runs_dir, "eval", run.id, "--episodes", "2", "--stochastic", "--json")
    assert explored.exit_code == 0, explored.output
    assert len(json.loads(greedy.stdout)["returns"]) == len(json.loads(explored.stdout)["returns"]) == 2


def test_json_listing_into_a_closed_pipe_and_a_nan_in_a_stored_config(tmp_path: Path) -> None:
    """`mbpo runs list --json | head -c 1`: no traceback when the reader goes away; NaN (in a config stored by
    an older version) comes out as null, so the output stays valid JSON."""
    runs_dir = tmp_path / "runs"
    with Registry.open(runs_dir) as registry:
        for seed in range(400):  # enough JSON to overflow the pipe's buffer
            registry.create_run(name=None, preset=None, env_id="Hopper-v5", algo="mbpo", seed=seed,
                                config={"model": {"improvement": float("nan")}, "padding": "x" * 200}, device="cpu",
                                command="mbpo train", target_steps=10)
    whole = subprocess.run([_console_script(), "--runs-dir", str(runs_dir), "runs", "list", "--json"],
                           capture_output=True, text=True, timeout=120, env=_subprocess_env(), check=False)
    assert whole.returncode == 0, whole.stderr
    rows = json.loads(whole.stdout, parse_constant=lambda name: pytest.fail(f"bare {name} in the JSON"))
    assert len(rows) == 400 and rows[0]["config"]["model"]["improvement"] is None
    proc = subprocess.Popen([_console_script(), "--runs-dir", str(runs_dir), "runs", "list", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_subprocess_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path: Path) -> None:
    """SIGINT 0.3 s after starting `mbpo train`: usually while torch and gymnasium are still being imported
    (about 2 s here), else during set-up. Either way: no traceback, exit 130."""
    proc = subprocess.Popen([_console_script(), "--runs-dir", str(tmp_path / "runs"), "train", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_subprocess_env())
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def test_read_only_commands_on_a_registry_this_process_cannot_write(trained: Trained,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Archived runs on read-only storage: `runs list`, `runs show` and `compare` read them and write nothing.
    (The tests may run as root, whom permissions do not stop: the folder is reported unwritable instead.)"""
    runs_dir = trained.runs_dir
    with Registry.open(runs_dir) as registry:
        registry.create_run(name="probe", preset=None, env_id="x", algo="mbpo", seed=0, config={}, device="cpu",
                            command="", target_steps=1)  # and let its connection checkpoint the WAL away
    before = {p.name: p.stat().st_mtime_ns for p in runs_dir.iterdir()}
    real_writable = registry_sqlite.writable
    monkeypatch.setattr(registry_sqlite, "writable", lambda folder: folder != runs_dir and real_writable(folder))
    listed = mbpo(runs_dir, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert trained.summary["id"] in {r["id"] for r in json.loads(listed.stdout)}
    shown = mbpo(runs_dir, "runs", "show", trained.summary["id"], "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["evals"], shown.output
    compared = mbpo(runs_dir, "compare", trained.summary["id"], "--format", "json")
    assert compared.exit_code == 0, compared.output
    assert {p.name: p.stat().st_mtime_ns for p in runs_dir.iterdir()} == before
    # a command that writes says why it cannot
    assert "cannot write runs directory" in one_error_line(mbpo(runs_dir, "train", *TINY))


@pytest.mark.parametrize(("args", "message"), [
    (["--if-exists", "resume"], "--if-exists resume needs --name"),
    (["--name", "x", "--if-exists", "maybe"], "--if-exists: expected error or resume, got 'maybe'"),
])
def test_if_exists_input_errors(tmp_path: Path, args: list[str], message: str) -> None:
    assert message in one_error_line(mbpo(tmp_path / "runs", "train", *TINY, *args))


def test_train_if_exists_resume_refuses_another_config_and_extends_a_finished_run(tmp_path: Path) -> None:
    """A requeued command that asks for something else is refused, naming what differs; more steps extend the run
    (as `mbpo resume --steps` does)."""
    runs = tmp_path / "runs"
    first = mbpo(runs, "train", *TINY, "--name", "job", "--if-exists", "resume", "--json")
    assert first.exit_code == 0, first.output
    run_id = json.loads(first.stdout)["id"]
    other_seed = one_error_line(mbpo(runs, "train", *TINY, "--seed", "1", "--name", "job", "--if-exists", "resume"))
    assert "run job exists with another config (train.seed: 0 -> 1)" in other_seed
    fewer = one_error_line(mbpo(runs, "train", *TINY, "--steps", "250", "--name", "job", "--if-exists", "resume"))
    assert "run job exists with train.steps 300, more than the 250 asked for" in fewer

    extended = mbpo(runs, "train", *TINY, "--steps", "400", "--name", "job", "--if-exists", "resume", "--json")
    assert extended.exit_code == 0, extended.output
    summary = json.loads(extended.stdout)
    assert (summary["id"], summary["status"], summary["env_steps"]) == (run_id, "finished", 400)
    with Registry.open(runs) as reg:
        assert [s for s, _, _ in reg.metrics(run_id, "eval_return")] == [100, 200, 300, 400]
        assert reg.get_run(run_id).target_steps == 400


def test_train_if_exists_resume_is_safe_to_run_again(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = mbpo(runs, "train", *TINY, "--name", "job", "--if-exists", "resume", "--json")
    assert first.exit_code == 0, first.output
    done = json.loads(first.stdout)
    again = mbpo(runs, "train", *TINY, "--name", "job", "--if-exists", "resume", "--json")
    assert again.exit_code == 0, again.output
    assert {k: json.loads(again.stdout)[k] for k in ("id", "status", "env_steps", "final_eval_return")} == {
        k: done[k] for k in ("id", "status", "env_steps", "final_eval_return")}
    assert "already taken" in one_error_line(mbpo(runs, "train", *TINY, "--name", "job"))

    # a run that died before its first checkpoint has nothing to continue: it is replaced by a new one
    with Registry.open(runs) as reg:
        stillborn = reg.create_run(name="early", preset=None, env_id="InvertedPendulum-v5", algo="mbpo", seed=0,
                                   config={}, device="cpu", command="mbpo train", target_steps=300)
        result = mbpo(runs, "train", *TINY, "--name", "early", "--if-exists", "resume", "--json")
        assert result.exit_code == 0, result.output
        replaced = json.loads(result.stdout)
        assert replaced["id"] != stillborn.id and replaced["status"] == "finished"
        assert [r.id for r in reg.list_runs() if r.name == "early"] == [replaced["id"]]
