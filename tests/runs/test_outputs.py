"""Tests for mbpo_cli.runs.outputs: which paths an output may take (never mbpo's own files, whatever links lead
there), the checks made before any work (by trying, for /proc and /sys), and the write by temporary file and rename.

No training: a runs directory with a real registry and a run folder holding a checkpoint-like file. The commands
that use the module are tested in tests/cli/test_command_outputs.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mbpo_cli.runs import layout, outputs
from mbpo_cli.runs.outputs import OutputError, check_file, check_folder, owner
from mbpo_cli.runs.registry import Registry, default_url
from mbpo_cli.sweeps.ablation import ablation_dir

CHECKPOINT = "checkpoints/step-0000000300.pt"


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A runs directory with a registry holding one run, whose folder holds a checkpoint-like file."""
    folder = tmp_path / "runs"
    with Registry.open(folder) as registry:
        run = registry.create_run(name="ip", preset=None, env_id="InvertedPendulum-v5", algo="mbpo", seed=0,
                                  config={}, device="cpu", command="test", target_steps=300)
    checkpoint = folder / run.id / CHECKPOINT
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"checkpoint bytes")
    return folder


def run_folder(runs_dir: Path) -> Path:
    (folder,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return folder


def refused(named: Path, runs_dir: Path, overwrite: bool = False) -> str:
    with pytest.raises(OutputError) as error:
        check_file("--out", named, runs_dir, overwrite)
    return str(error.value)


def test_the_names_it_protects_are_the_ones_the_tool_uses(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    assert default_url(runs_dir) == f"sqlite:///{(runs_dir / layout.REGISTRY_FILE).absolute()}"
    assert ablation_dir(runs_dir, "g").parent == runs_dir / layout.ABLATIONS_FOLDER
    assert layout.RUN_ID.fullmatch(run_folder(runs_dir).name)


def test_mbpo_s_own_files_are_never_an_output(runs_dir: Path) -> None:
    run = run_folder(runs_dir)
    for suffix in ("", "-wal", "-shm", "-journal"):
        assert owner((runs_dir / f"registry.db{suffix}").resolve(), runs_dir) == "the registry database"
    assert owner((run / CHECKPOINT).resolve(), runs_dir) == f"inside the folder of run {run.name}"
    assert owner(run.resolve(), runs_dir) == f"the folder of run {run.name}"
    assert owner((runs_dir / "0123abcd" / "x.csv").resolve(), runs_dir) == "inside the folder of run 0123abcd"
    assert owner((runs_dir / "ablations" / "g" / "x.png").resolve(), runs_dir) == "inside the ablations' folder"
    assert owner(runs_dir.resolve(), runs_dir).startswith("the runs directory")
    # the user's own files and folders beside them are not mbpo's
    for mine in ("metrics.csv", "tb", "tb/ip", "registry.db.csv", "0123abcd.csv"):
        assert owner((runs_dir / mine).resolve(), runs_dir) is None
    assert owner(runs_dir.parent.resolve() / "metrics.csv", runs_dir) is None


def test_the_registry_and_a_checkpoint_are_refused_even_with_overwrite(runs_dir: Path) -> None:
    checkpoint = run_folder(runs_dir) / CHECKPOINT
    for target in (runs_dir / "registry.db", runs_dir / "registry.db-wal", checkpoint):
        line = refused(target, runs_dir, overwrite=True)
        assert line.startswith(f"--out {target}: that is ") and line.endswith("which mbpo keeps; write somewhere else")
    assert checkpoint.read_bytes() == b"checkpoint bytes"


def test_a_link_to_mbpo_s_files_is_refused(runs_dir: Path, tmp_path: Path) -> None:
    checkpoint = run_folder(runs_dir) / CHECKPOINT
    for name, target in (("reg.csv", runs_dir / "registry.db"), ("ck.pt", checkpoint),
                         ("shm.csv", runs_dir / "registry.db-shm"), ("in-run", checkpoint.parent)):
        link = tmp_path / name
        link.symlink_to(target)
        assert f"(a link to {target.resolve()}): that is " in refused(link, runs_dir, overwrite=True)
    # a folder link: the file "beside" it is inside the run's folder
    assert "inside the folder of run" in refused(tmp_path / "in-run" / "new.pt", runs_dir, overwrite=True)
    # a link to the runs directory: the registry through it
    (tmp_path / "other").symlink_to(runs_dir)
    assert "the registry database" in refused(tmp_path / "other" / "registry.db", runs_dir, overwrite=True)


def test_the_registry_of_the_url_is_refused(runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "db" / "shared.db"
    elsewhere.parent.mkdir()
    monkeypatch.setenv("MBPO_REGISTRY_URL", f"sqlite:///{elsewhere}")
    for suffix in ("", "-wal", "-journal"):
        assert "the registry database" in refused(Path(f"{elsewhere}{suffix}"), runs_dir, overwrite=True)
    assert "the registry database" in refused(runs_dir / "registry.db", runs_dir)  # the default one still is
    monkeypatch.setenv("MBPO_REGISTRY_URL", "postgresql+psycopg://u:p@host/db")
    assert check_file("--out", elsewhere, runs_dir, False).target == elsewhere.resolve()


def test_a_hard_link_to_the_registry_is_refused(runs_dir: Path, tmp_path: Path) -> None:
    hard = tmp_path / "copy.db"
    os.link(runs_dir / "registry.db", hard)
    assert "the registry database" in refused(hard, runs_dir, overwrite=True)


def test_an_existing_file_is_replaced_only_with_overwrite(runs_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "m.csv"
    old.write_text("old")
    assert refused(old, runs_dir) == f"--out {old}: the file exists; add --overwrite to replace it"
    output = check_file("--out", old, runs_dir, True)
    with output.writing() as partial:
        partial.write_text("new")
    assert old.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "runs"]


def test_a_link_to_a_file_of_the_user_is_followed_with_overwrite(runs_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "latest.csv"
    real.write_text("old")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    assert "the file exists; add --overwrite" in refused(link, runs_dir)
    with check_file("--out", link, runs_dir, True).writing() as partial:
        partial.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in real.parent.iterdir()) == ["latest.csv"]


def test_folders_that_are_missing_or_take_no_file(runs_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "m.csv"
    assert refused(missing, runs_dir) == f"--out {missing}: the folder {missing.parent} does not exist"
    assert refused(tmp_path, runs_dir) == f"--out {tmp_path}: is a folder; name the file to write"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert refused(blocker / "m.csv", runs_dir) == f"--out {blocker / 'm.csv'}: {blocker} is not a folder"
    assert refused(Path(os.devnull), runs_dir, overwrite=True) == \
        f"--out {os.devnull}: is not a regular file; name a file to write"


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_proc_and_sys_are_refused_by_trying(runs_dir: Path, folder: str) -> None:
    """Permission bits say root may write there (os.access agrees); creating a file says otherwise."""
    if not Path(folder).is_dir():
        pytest.skip(f"no {folder} here")
    line = refused(Path(folder) / "m.csv", runs_dir)
    assert line.startswith(f"--out {folder}/m.csv: cannot write in the folder {folder}: ")
    with pytest.raises(OutputError, match=f"cannot write in the folder {folder}"):
        check_folder("--out", Path(folder) / "tb", runs_dir)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_refused(runs_dir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert "cannot write in the folder" in refused(locked / "m.csv", runs_dir)
    finally:
        locked.chmod(stat.S_IRWXU)
    assert list(locked.iterdir()) == []


def test_a_failed_write_leaves_the_old_file_whole_and_no_partial_file(runs_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "policy.onnx"
    old.write_bytes(b"old policy")
    output = check_file("--out", old, runs_dir, True)
    with pytest.raises(RuntimeError), output.writing() as partial:
        assert partial.parent == tmp_path and partial.name.startswith(".policy.") and partial.suffix == ".onnx"
        partial.write_bytes(b"half a pol")
        raise RuntimeError("the export failed")
    assert old.read_bytes() == b"old policy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx", "runs"]


def test_a_new_file_gets_the_mode_of_any_new_file(runs_dir: Path, tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with check_file("--out", tmp_path / "m.csv", runs_dir, False).writing() as partial:
            partial.write_text("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m.csv").stat().st_mode) == 0o644


def test_output_folders(runs_dir: Path, tmp_path: Path) -> None:
    check_folder("--out", runs_dir / "tb", runs_dir)  # a new folder of the user's beside the runs is fine
    check_folder("--out", tmp_path / "tb", runs_dir)
    for owned in (runs_dir, run_folder(runs_dir), run_folder(runs_dir) / "tensorboard", runs_dir / "ablations"):
        with pytest.raises(OutputError, match="which mbpo keeps"):
            check_folder("--out", owned, runs_dir)
    with pytest.raises(OutputError, match="does not exist"):
        check_folder("--out", tmp_path / "a" / "b", runs_dir)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_folder("--out", tmp_path / "file", runs_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "runs"]


def test_staging_is_removed_with_what_it_holds(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), outputs.staging(tmp_path / "ip") as partial:
        (partial / "events.out.tfevents.1").write_bytes(b"half")
        raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []


def test_long_paths_are_shortened_in_messages(runs_dir: Path, tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 200) / "m.csv"
    line = refused(deep, runs_dir)
    assert len(line) < 3 * outputs.SHOWN_PATH and "…" in line and line.endswith("does not exist")
