"""Checkpoint files as the registry names them: relative to the runs directory now; absolute, or relative to
the directory a run was started in, in rows written by older versions."""

from pathlib import Path

import pytest

from mbpo_cli.runs.layout import checkpoint_file, stored_path


def test_paths_are_stored_relative_to_the_runs_directory(tmp_path: Path) -> None:
    assert stored_path(tmp_path, tmp_path / "abc" / "checkpoints" / "step-1.pt") == "abc/checkpoints/step-1.pt"
    assert stored_path(Path("runs"), Path("runs/abc/checkpoints/x.pt")) == "abc/checkpoints/x.pt"
    assert checkpoint_file(tmp_path, "abc/checkpoints/step-1.pt") == tmp_path / "abc/checkpoints/step-1.pt"


def test_rows_of_older_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = tmp_path / "old" / "step-1.pt"
    assert checkpoint_file(Path("runs"), str(absolute)) == absolute
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "abc").mkdir(parents=True)
    (tmp_path / "runs" / "abc" / "step-1.pt").write_bytes(b"x")
    # written as `runs/abc/step-1.pt` by a run started here with --runs-dir runs
    assert checkpoint_file(tmp_path / "runs", "runs/abc/step-1.pt") == Path("runs/abc/step-1.pt")
