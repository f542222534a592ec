"""Every command that writes a file or folder the user names (`export --out`, `runs export --out` as CSV and as
TensorBoard folders, `compare --plot`, `diagnose --plot`, `eval --video`) refuses, with one line and exit 2 before any
work, the registry, anything in a run's folder (a checkpoint), a link to either, /proc and /sys, a missing folder,
and an existing file without --overwrite; the registry and the checkpoint keep their bytes.

The run is registry rows made without training (each refusal comes before the run is read) and a checkpoint-like
file in its folder; `mbpo export` of a real run is tested in tests/runs/test_policy_export.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelpers import mbpo, one_error_line

from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.reports.metrics_export import EVENT_FILE_PREFIX
from mbpo_cli.runs.registry import Registry

RUN = "ip-run"
CHECKPOINT = "checkpoints/step-0000002000.pt"
COMMANDS = {
    "export": (["export", RUN, "--format", "torchscript", "--out"], ".pt"),
    "runs export csv": (["runs", "export", RUN, "--format", "csv", "--out"], ".csv"),
    "runs export tensorboard": (["runs", "export", RUN, "--format", "tensorboard", "--out"], ""),
    "compare --plot": (["compare", RUN, "--plot"], ".png"),
    "diagnose --plot": (["diagnose", RUN, "--plot"], ".svg"),
    "eval --video": (["eval", RUN, "--video"], ".mp4"),
}
"""Command -> (its arguments up to the output path, the suffix the path takes; none: a folder)."""


class Place:
    """A runs directory with one recorded run and a checkpoint-like file in the run's folder, beside a folder of
    the user's (`mine`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.runs_dir = tmp_path / "runs"
        self.mine = tmp_path / "mine"
        self.mine.mkdir()
        config = resolve_config(preset="inverted_pendulum", seed=0)
        with Registry.open(self.runs_dir) as registry:
            run = registry.create_run(name=RUN, preset="inverted_pendulum", env_id="InvertedPendulum-v5",
                                      algo="mbpo", seed=0, config=config.to_dict(), device="cpu",
                                      command="mbpo train", target_steps=2000)
            rows = []
            for step in (1000, 2000):
                rows += [(step, "eval_return", step / 2), (step, "diag_model_error", 0.01),
                         (step, "diag_model_return", step / 4), (step, "diag_disagreement", 3.0),
                         (step, "diag_open_loop_h1", 0.01), (step, "diag_open_loop_h2", 0.05)]
            registry.log_metrics(run.id, rows)
            registry.set_status(run.id, "finished")
        self.run_folder = self.runs_dir / run.id
        self.checkpoint = self.run_folder / CHECKPOINT
        self.checkpoint.parent.mkdir(parents=True)
        self.checkpoint.write_bytes(b"the run's checkpoint")
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the runs directory (links not followed) and of the user's folder -> its bytes; not the
        registry's -wal and -shm files, which SQLite creates for any reader."""
        return {str(p): p.read_bytes() for root in (self.runs_dir, self.mine) for p in sorted(root.rglob("*"))
                if p.is_file() and not p.is_symlink() and not p.name.endswith(("-wal", "-shm"))}

    def link(self, name: str, target: Path) -> Path:
        path = self.mine / name
        path.symlink_to(target)
        return path


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path)


TARGETS: dict[str, tuple[Callable[[Place, str], Path], str]] = {
    "the registry": (lambda p, s: p.runs_dir / "registry.db" if s in ("", ".csv", ".pt") else
                     p.link(f"registry{s}", p.runs_dir / "registry.db"), "that is the registry database"),
    "the registry's WAL": (lambda p, s: p.link(f"wal{s}", p.runs_dir / "registry.db-wal"),
                           "that is the registry database"),
    "a checkpoint": (lambda p, s: p.checkpoint if s in ("", ".pt") else p.checkpoint.with_suffix(s),
                     "inside the folder of run"),
    "a link to a checkpoint": (lambda p, s: p.link(f"policy{s}", p.checkpoint), "inside the folder of run"),
    "a run's folder": (lambda p, s: p.run_folder / f"new{s}", "the folder of run"),
    "the runs directory": (lambda p, s: p.runs_dir if not s else p.runs_dir / "ablations" / f"x{s}",
                           "which mbpo keeps"),
    "/proc": (lambda p, s: Path("/proc") / f"out{s}", "cannot write in the folder /proc: "),
    "/sys": (lambda p, s: Path("/sys") / f"out{s}", "cannot write in the folder /sys: "),
    "a missing folder": (lambda p, s: p.mine / "missing" / f"out{s}", "does not exist"),
}
"""What is refused -> (the path given for a command's suffix, what the error line says)."""


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_refused_outputs_are_one_line_exit_2_and_change_nothing(place: Place, command: str, target: str) -> None:
    args, suffix = COMMANDS[command]
    where, says = TARGETS[target]
    path = where(place, suffix)
    if not path.parent.exists() and target in ("/proc", "/sys"):
        pytest.skip(f"no {target} here")
    line = one_error_line(mbpo(place.runs_dir, *args, str(path), "--overwrite"))
    assert says in line and line.startswith(f"error: {args[-1]} {path}"), line
    assert place.snapshot() == place.before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_existing_output_is_kept_without_overwrite(place: Place, command: str) -> None:
    args, suffix = COMMANDS[command]
    if suffix:
        path = place.mine / f"old{suffix}"
        path.write_bytes(b"old")
        says = f"error: {args[-1]} {path}: the file exists; add --overwrite to replace it"
    else:  # a folder that already holds this run's event files
        path = place.mine / "tb"
        (path / RUN).mkdir(parents=True)
        (path / RUN / f"{EVENT_FILE_PREFIX}old").write_bytes(b"old")
        says = f"error: --out {path}: {path / RUN} already holds event files; add --overwrite to replace them"
    before = place.snapshot()
    assert one_error_line(mbpo(place.runs_dir, *args, str(path))) == says
    assert place.snapshot() == before


@pytest.mark.parametrize("command", ["runs export csv", "runs export tensorboard", "compare --plot",
                                     "diagnose --plot"])
def test_overwrite_replaces_an_existing_output(place: Place, command: str) -> None:
    args, suffix = COMMANDS[command]
    path = place.mine / (f"old{suffix}" if suffix else "tb")
    old = path / RUN / f"{EVENT_FILE_PREFIX}old" if not suffix else path
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"old")
    result = mbpo(place.runs_dir, *args, str(path), "--overwrite")
    assert result.exit_code == 0, result.output
    if suffix:
        assert path.read_bytes() != b"old" and path.stat().st_size > 100
    else:
        assert not old.exists() and len(list((path / RUN).glob(f"{EVENT_FILE_PREFIX}*"))) == 1
    assert sorted(p.name for p in place.mine.iterdir()) == [path.name]  # no temporary file left beside it
    assert {k: v for k, v in place.snapshot().items() if not k.startswith(str(place.mine))} == \
        {k: v for k, v in place.before.items() if not k.startswith(str(place.mine))}


def test_tensorboard_may_go_to_a_new_folder_in_the_runs_directory(place: Place) -> None:
    """mbpo creates only run folders (named by their id), `ablations` and the registry there: `runs/tb` is the
    user's."""
    result = mbpo(place.runs_dir, "runs", "export", RUN, "--out", str(place.runs_dir / "tb"))
    assert result.exit_code == 0, result.output
    assert len(list((place.runs_dir / "tb" / RUN).glob(f"{EVENT_FILE_PREFIX}*"))) == 1
    assert {k: v for k, v in place.snapshot().items() if "/tb/" not in k} == place.before


def test_a_tensorboard_subfolder_linked_into_a_run_is_refused(place: Place) -> None:
    """`tb/<run name>` is where the run's events go: a link from there into the run's folder (its live TensorBoard
    files) is refused before any event file there is replaced."""
    live = place.run_folder / "tensorboard"
    live.mkdir()
    (live / f"{EVENT_FILE_PREFIX}live").write_bytes(b"live events")
    before = place.snapshot()
    (place.mine / "tb").mkdir()
    (place.mine / "tb" / RUN).symlink_to(live)
    line = one_error_line(mbpo(place.runs_dir, "runs", "export", RUN, "--out", str(place.mine / "tb"), "--overwrite"))
    assert f"{place.mine / 'tb' / RUN} (a link to {live.resolve()}): that is inside the folder of run" in line
    assert place.snapshot() == before


def test_the_sqlite_registry_of_the_url_is_refused(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = place.mine / "shared.db"
    monkeypatch.setenv("MBPO_REGISTRY_URL", f"sqlite:///{shared}")
    with Registry.open(place.runs_dir) as registry:  # the URL's registry, created
        registry.ensure_group("g", "seeds")
    before = shared.read_bytes()
    line = one_error_line(mbpo(place.runs_dir, "runs", "export", "g", "--format", "csv", "--out", str(shared),
                               "--overwrite"))
    assert line == f"error: --out {shared}: that is the registry database, which mbpo keeps; write somewhere else"
    assert shared.read_bytes() == before


def test_json_names_the_file_as_given(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(place.mine)
    result = mbpo(place.runs_dir, "diagnose", RUN, "--plot", "d.png", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plot"] == "d.png" and (place.mine / "d.png").stat().st_size > 1000
