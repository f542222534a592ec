"""Weights & Biases tracking (`train.track`, `mbpo train --track`, `mbpo resume --track`): tiny real runs, in-process,
in W&B's offline mode (no network here).

An offline W&B run is the `.wandb` transaction log in `runs/<run-id>/wandb/offline-run-*/`, the file that
`wandb sync` uploads. It is read back record by record (:func:`offline_runs`): the log's framing is LevelDB's log
format, which W&B has kept since 0.10, and each record is wandb's own protobuf `Record`. The runs' metrics, config,
group and id are compared with the registry's.

The tests that run wandb skip where it is not installed (`pip install 'mbpo-cli[wandb]'`); the one-line error for
its absence runs everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from clihelpers import TINY, TINY_SETS, mbpo, one_error_line

from mbpo_cli.config.load import resolve_config
from mbpo_cli.config.metrics import tensorboard_tag
from mbpo_cli.runs.process import StopSignals
from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.reporting import SilentReporter
from mbpo_cli.runs.start import RunMeta, start_run
from mbpo_cli.runs.wandb_tracking import DEFAULT_PROJECT, STEP_METRIC, LiveWandb, WandbMissing, wandb_run_id

MISSING = "error: train.track needs the wandb package: pip install 'mbpo-cli[wandb]'"
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason="wandb is not installed (pip install 'mbpo-cli[wandb]')")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """W&B in offline mode, silent, with no project, entity or folder from the environment nor any login; wandb's
    process-wide state (which keeps the environment it first read) is torn down after each test."""
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()


def without_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails, as without the package


# -- Reading an offline run back --------------------------------------------------------------------------------------

BLOCK = 32 * 1024
"""The log's block size: a record's pieces never straddle a block; a block's last 6 bytes or less are padding."""
HEADER = struct.Struct("<4sHB")
"""The file's header: `:W&B`, the magic number 0xBEE1, format version 0."""
PIECE = struct.Struct("<IHB")
"""Each piece of a record: CRC-32C, length, kind (1 a whole record; 2, 3, 4 its first, middle and last pieces)."""


@dataclass
class OfflineRun:
    """What one session wrote to its offline W&B run."""

    folder: Path
    run: Any = None
    """The run record (wandb's protobuf `RunRecord`)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """The logged rows, in order."""
    step_metrics: dict[str, str] = field(default_factory=dict)
    """Metric name or glob -> the metric it is plotted against (`define_metric`)."""

    @property
    def config(self) -> dict[str, Any]:
        return {key: json.loads(item.value_json) for item in self.run.config.update
                if (key := item_key(item)) != "_wandb"}

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Logged key -> [(env step, value)], the env step column left out."""
        logged: dict[str, list[tuple[int, float]]] = {}
        for row in self.history:
            for key, value in row.items():
                if not key.startswith("_") and key != STEP_METRIC:
                    logged.setdefault(key, []).append((row[STEP_METRIC], value))
        return logged


def item_key(item: Any) -> str:
    """The key of a logged item or config item: `key`, or the parts of `nested_key` (which recent versions write)."""
    return item.key or ".".join(item.nested_key)


def records(path: Path) -> Iterator[Any]:
    """The protobuf records of a `.wandb` file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert HEADER.unpack_from(data) == (b":W&B", 0xBEE1, 0)
    pos, pieces = HEADER.size, b""
    while pos + PIECE.size <= len(data):
        if BLOCK - pos % BLOCK < PIECE.size:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = PIECE.unpack_from(data, pos)
        pieces += data[pos + PIECE.size:pos + PIECE.size + length]
        pos += PIECE.size + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def offline_runs(run_folder: Path) -> list[OfflineRun]:
    """The offline W&B runs in a run folder, one per session that tracked it, oldest first.

    A finished run's log may still be partly buffered in wandb's service process, which writes it out when it stops
    (at the process's exit, or `wandb.teardown()`, as here)."""
    import wandb

    wandb.teardown()
    found = []
    for log in run_folder.glob("wandb/offline-run-*/run-*.wandb"):
        run = OfflineRun(log.parent)
        for record in records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.run = record.run
            elif kind == "history":
                run.history.append({item_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "metric" and record.metric.step_metric:
                run.step_metrics[record.metric.name or record.metric.glob_name] = record.metric.step_metric
        found.append(run)
    return sorted(found, key=lambda r: r.run.start_time.ToDatetime())


def registry_scalars(runs_dir: Path, run_id: str, after: int = 0) -> dict[str, list[tuple[int, float]]]:
    """The registry's metric rows of the run past env step `after`, as namespaced tag -> [(step, value)]."""
    tags: dict[str, list[tuple[int, float]]] = {}
    with Registry.open(runs_dir) as registry:
        for step, key, value in registry.metrics(run_id):
            if step > after:
                tags.setdefault(tensorboard_tag(key), []).append((step, value))
    return tags


def stop_after(steps: int) -> Any:
    """A `StopSignals.requested` that says yes from its (steps + 1)th call on (as if Ctrl-C came then)."""
    asked = {"n": 0}

    def requested(self: StopSignals) -> bool:
        asked["n"] += 1
        return asked["n"] > steps

    return requested


# -- Tests ------------------------------------------------------------------------------------------------------------


@needs_wandb
def test_an_offline_run_holds_the_metrics_config_group_and_id(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    with Registry.open(runs_dir) as registry:
        registry.ensure_group("tiny-seeds", "seeds")
    result = mbpo(runs_dir, "train", *TINY, "--track", "--group", "tiny-seeds", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # stdout is the JSON document alone: wandb writes nothing there
    (tracked,) = offline_runs(runs_dir / out["id"])
    with Registry.open(runs_dir) as registry:
        run = registry.get_run(out["id"])
    assert run.config["train"]["track"] is True
    assert (tracked.run.run_id, tracked.run.display_name, tracked.run.project) == (wandb_run_id(run), run.name,
                                                                                  DEFAULT_PROJECT)
    assert tracked.run.run_group == "tiny-seeds"
    assert list(tracked.run.tags) == ["inverted_pendulum", "InvertedPendulum-v5", "mbpo", "seed-0"]
    assert tracked.config == run.config
    scalars = tracked.scalars()
    assert scalars == registry_scalars(runs_dir, run.id)
    assert {"eval/eval_return", "model/model_train_loss", "agent/critic_loss", "time/wall_seconds",
            "diag/diag_open_loop_h1", "rollout/rollout_k", "train/epoch"} <= set(scalars)
    assert [step for step, _ in scalars["eval/eval_return"]] == [100, 200, 300]
    assert tracked.step_metrics == {"*": STEP_METRIC}  # every panel's x axis is the env step
    assert result.stderr.strip().splitlines() == [f"W&B: offline run {wandb_run_id(run)} (upload it with: wandb sync "
                                                  f"{tracked.folder})"]


@needs_wandb
def test_a_resumed_run_continues_the_same_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs_dir = tmp_path / "runs"
    with monkeypatch.context() as patch:  # untracked, stopped at env step 150
        patch.setattr(StopSignals, "requested", stop_after(150))
        result = mbpo(runs_dir, "train", *TINY, "--json")
    assert result.exit_code == 130, result.output
    run_id = json.loads(result.stdout)["id"]
    with monkeypatch.context() as patch:  # tracked from the resume on, stopped again at env step 250
        patch.setattr(StopSignals, "requested", stop_after(100))
        result = mbpo(runs_dir, "resume", run_id, "--track", "--json")
    assert result.exit_code == 130, result.output
    with Registry.open(runs_dir) as registry:
        run = registry.get_run(run_id)
    assert run.env_steps == 250 and run.config["train"]["track"] is True  # recorded: later sessions track too

    with monkeypatch.context() as patch:  # so a resume needs the package
        without_wandb(patch)
        assert one_error_line(mbpo(runs_dir, "resume", run_id)) == MISSING
    result = mbpo(runs_dir, "resume", run_id, "--json")
    assert result.exit_code == 0, result.output

    first, second = offline_runs(runs_dir / run_id)
    assert first.run.run_id == second.run.run_id == wandb_run_id(run)
    assert [s for s, _ in first.scalars()["eval/eval_return"]] == [200]
    assert [s for s, _ in second.scalars()["eval/eval_return"]] == [300]
    both = {tag: first.scalars().get(tag, []) + second.scalars().get(tag, [])
            for tag in {*first.scalars(), *second.scalars()}}
    assert both == registry_scalars(runs_dir, run_id, after=150)


def test_tracking_without_wandb_is_one_line_before_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_wandb(monkeypatch)
    runs_dir = tmp_path / "runs"
    assert one_error_line(mbpo(runs_dir, "train", *TINY, "--track")) == MISSING
    assert one_error_line(mbpo(runs_dir, "train", *TINY, "--set", "train.track=true")) == MISSING
    assert one_error_line(mbpo(runs_dir, "resume", "3f9a1c2e", "--track")) == MISSING
    assert not runs_dir.exists()
    # the session checks too (for callers other than `mbpo train`): nothing is registered
    config = resolve_config(preset="inverted_pendulum", overrides=[*TINY_SETS, "train.track=true"], steps=100)
    with Registry.open(runs_dir) as registry:
        with pytest.raises(WandbMissing, match=r"train\.track needs the wandb package"):
            start_run(config, RunMeta(preset=None, name=None, command="test"), registry, runs_dir, SilentReporter())
        assert registry.list_runs() == []
    # the flags set the key, over a config file's; printing the config needs no package
    config_file = tmp_path / "tracked.yaml"
    config_file.write_text("base: inverted_pendulum\ntrain:\n  track: true\n")
    result = mbpo(runs_dir, "train", "--config", str(config_file), "--no-track", "--print-config")
    assert result.exit_code == 0, result.output
    assert "track: false" in result.stdout
    result = mbpo(runs_dir, "train", *TINY, "--track", "--print-config")
    assert result.exit_code == 0, result.output
    assert "track: true" in result.stdout
    line = one_error_line(mbpo(runs_dir, "train", *TINY, "--set", "train.track=maybe"))
    assert "train.track: expected true or false, got str 'maybe'" in line


@needs_wandb
def test_tracking_that_cannot_start_warns_and_training_goes_on(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")  # with no login anywhere (see `offline`)
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", *TINY, "--track", "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["id"]
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("warning: W&B tracking cannot start (")
    assert warning.endswith("); this session trains without it, the registry keeps every metric")
    assert len(warning) < 400
    assert [s for s, _ in registry_scalars(runs_dir, run_id)["eval/eval_return"]] == [100, 200, 300]
    assert not (runs_dir / run_id / "wandb").exists()


@needs_wandb
def test_a_wandb_run_that_stops_accepting_metrics_warns_once(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    with Registry.open(runs_dir) as registry:
        run = registry.create_run(name=None, preset=None, env_id="Pendulum-v1", algo="sac", seed=3, config={"a": 1},
                                  device="cpu", command="test", target_steps=10)
    folder = runs_dir / run.id
    folder.mkdir()
    messages: list[str] = []
    tracker = LiveWandb(run, run.config, folder, messages.append)
    tracker.write(5, {"eval_return": 1.0, "critic_loss": float("nan")})
    tracker.run.finish()  # as if something else in the process finished it
    tracker.write(10, {"eval_return": 2.0})
    tracker.write(15, {"eval_return": 3.0})
    tracker.close()
    tracker.close()  # twice is harmless
    assert len(messages) == 2 and messages[0].startswith("W&B: offline run ")
    assert messages[1].startswith("warning: W&B tracking stopped (")
    (tracked,) = offline_runs(folder)
    assert tracked.scalars() == {"eval/eval_return": [(5, 1.0)]}  # NaN left out, as the registry leaves it
    assert list(tracked.run.tags) == ["Pendulum-v1", "sac", "seed-3"] and tracked.run.run_group == ""
