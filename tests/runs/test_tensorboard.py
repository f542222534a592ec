"""Live TensorBoard event files (`train.tensorboard`, `mbpo train --tensorboard`): tiny real runs, in-process.

The files are read back with TensorBoard's own reader (`EventAccumulator`) and compared with the registry's
metric rows, each under its namespaced tag (`eval/eval_return`); TensorBoard stores a scalar as a 32-bit float, so
values are compared after the same rounding.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clihelpers import TINY, TINY_SETS, mbpo, one_error_line
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbpo_cli.config.load import resolve_config
from mbpo_cli.config.metrics import tensorboard_tag
from mbpo_cli.runs import session
from mbpo_cli.runs.process import StopSignals
from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.reporting import SilentReporter
from mbpo_cli.runs.start import RunMeta, start_run
from mbpo_cli.runs.tensorboard import LiveTensorBoard, TensorBoardMissing, live_folder

MISSING = "error: train.tensorboard needs the tensorboard package: pip install 'mbpo-cli[tensorboard]'"


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folder of every LiveTensorBoard closed (each session must close its log once, however it ends)."""
    closed: list[Path] = []
    original = LiveTensorBoard.close

    def close(self: LiveTensorBoard) -> None:
        closed.append(self.folder)
        original(self)

    monkeypatch.setattr(LiveTensorBoard, "close", close)
    return closed


def without_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails, as without the package


def read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> [(step, value)] as TensorBoard reads the folder."""
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def registry_scalars(runs_dir: Path, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """The registry's metric rows of the run (plain keys) as namespaced tag -> [(step, value as float32)]."""
    tags: dict[str, list[tuple[int, float]]] = {}
    with Registry.open(runs_dir) as registry:
        for step, key, value in registry.metrics(run_id):
            tags.setdefault(tensorboard_tag(key), []).append((step, float(np.float32(value))))
    return tags


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"))


def test_live_event_files_hold_what_the_registry_holds(tmp_path: Path, closes: list[Path]) -> None:
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", *TINY, "--tensorboard", "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["id"]
    folder = runs_dir / run_id / "tensorboard"
    assert len(event_files(folder)) == 1
    events, registry = read_events(folder), registry_scalars(runs_dir, run_id)
    assert {"eval/eval_return", "model/model_train_loss", "agent/critic_loss", "time/wall_seconds",
            "diag/diag_open_loop_h1", "rollout/rollout_k", "train/epoch"} <= set(registry)
    assert events == registry
    assert [s for s, _ in events["eval/eval_return"]] == [100, 200, 300]
    assert not [tag for tag in events if tag.startswith("other/")]  # every key the run wrote is in the table
    with Registry.open(runs_dir) as reg:  # the registry keeps the plain keys
        assert [step for step, _, _ in reg.metrics(run_id, "eval_return")] == [100, 200, 300]
    assert closes == [folder]
    with Registry.open(runs_dir) as reg:
        assert reg.get_run(run_id).config["train"]["tensorboard"] is True


def test_no_event_files_unless_asked(tmp_path: Path, closes: list[Path]) -> None:
    runs_dir = tmp_path / "runs"
    config = tmp_path / "tb.yaml"
    config.write_text("base: inverted_pendulum\ntrain:\n  tensorboard: true\n")
    tiny = [a for a in TINY if a not in ("--preset", "inverted_pendulum")]
    result = mbpo(runs_dir, "train", "--config", str(config), *tiny, "--steps", "100", "--no-tensorboard", "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["id"]
    assert not live_folder(runs_dir / run_id).exists()
    assert closes == []


def test_interrupted_then_resumed_run_appends_to_the_same_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 closes: list[Path]) -> None:
    runs_dir = tmp_path / "runs"
    asked = {"n": 0}

    def stop_after_150_steps(self: StopSignals) -> bool:  # as if Ctrl-C came at env step 150
        asked["n"] += 1
        return asked["n"] > 150

    with monkeypatch.context() as patch:
        patch.setattr(StopSignals, "requested", stop_after_150_steps)
        result = mbpo(runs_dir, "train", *TINY, "--tensorboard", "--json")
    assert result.exit_code == 130, result.output
    run_id = json.loads(result.stdout)["id"]
    folder = runs_dir / run_id / "tensorboard"
    assert len(event_files(folder)) == 1 and closes == [folder]
    assert [s for s, _ in read_events(folder)["eval/eval_return"]] == [100]

    with monkeypatch.context() as patch:  # a resumed run that asks for event files needs the package too
        without_tensorboard(patch)
        assert one_error_line(mbpo(runs_dir, "resume", run_id)) == MISSING
    with Registry.open(runs_dir) as registry:
        assert registry.get_run(run_id).status == "interrupted"
        assert registry.get_run(run_id).env_steps == 150
    assert len(event_files(folder)) == 1

    time.sleep(1.1)  # event files are read in name order, which starts with the second they were created
    result = mbpo(runs_dir, "resume", run_id, "--json")
    assert result.exit_code == 0, result.output
    assert len(event_files(folder)) == 2 and closes == [folder, folder]
    events = read_events(folder)
    assert [s for s, _ in events["eval/eval_return"]] == [100, 200, 300]
    assert events == registry_scalars(runs_dir, run_id)


def test_a_failed_run_closes_its_log_with_what_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       closes: list[Path]) -> None:
    def fail(self: session.Session, eval_return: float) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(session.Session, "save_best", fail)  # after the first epoch's metrics are logged
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", *TINY, "--tensorboard")
    assert result.exit_code == 1
    assert "disk on fire" in result.stderr
    (run_id,) = [p.name for p in runs_dir.iterdir() if p.is_dir()]
    folder = runs_dir / run_id / "tensorboard"
    assert closes == [folder]
    events = read_events(folder)
    assert [s for s, _ in events["eval/eval_return"]] == [100]
    assert events == registry_scalars(runs_dir, run_id)


def test_missing_tensorboard_fails_before_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_tensorboard(monkeypatch)
    runs_dir = tmp_path / "runs"
    assert one_error_line(mbpo(runs_dir, "train", *TINY, "--tensorboard")) == MISSING
    assert one_error_line(mbpo(runs_dir, "train", *TINY, "--set", "train.tensorboard=true")) == MISSING
    assert not runs_dir.exists()
    # the session checks too (for callers other than `mbpo train`): nothing is registered
    config = resolve_config(preset="inverted_pendulum", overrides=[*TINY_SETS, "train.tensorboard=true"], steps=100)
    with Registry.open(runs_dir) as registry:
        with pytest.raises(TensorBoardMissing, match=r"train\.tensorboard needs the tensorboard package"):
            start_run(config, RunMeta(preset=None, name=None, command="test"), registry, runs_dir, SilentReporter())
        assert registry.list_runs() == []


def test_the_key_is_validated(tmp_path: Path) -> None:
    line = one_error_line(mbpo(tmp_path / "runs", "train", *TINY, "--set", "train.tensorboard=maybe"))
    assert "train.tensorboard: expected true or false, got str 'maybe'" in line


def test_a_resumed_log_drops_what_the_interrupted_session_wrote_past_its_checkpoint(tmp_path: Path) -> None:
    # A session killed at step 300 whose last checkpoint was at step 200: the resumed session rewrites step 300.
    warnings: list[str] = []
    first = LiveTensorBoard(tmp_path, 0, warnings.append)
    for step in (100, 200, 300):
        first.write(step, {"eval_return": step / 10, "loss": float("nan")})
    first.close()
    time.sleep(1.1)  # event files are read in name order, which starts with the second they were created
    second = LiveTensorBoard(tmp_path, 200, warnings.append)
    for step in (300, 400):
        second.write(step, {"eval_return": step / 100})
    second.close()
    second.close()  # twice is harmless
    assert read_events(tmp_path) == {"eval/eval_return": [(100, 10.0), (200, 20.0), (300, 3.0), (400, 4.0)]}
    assert warnings == []


def test_a_log_that_cannot_be_written_warns_once_and_training_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "tensorboard"
    blocker.write_text("a file where the folder should be")
    warnings: list[str] = []
    log = LiveTensorBoard(blocker, 0, warnings.append)
    log.write(100, {"eval_return": 1.0})
    log.close()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: cannot write TensorBoard event files in {blocker}")
    assert blocker.read_text() == "a file where the folder should be"
