"""`mbpo train --seeds`: one process trains a pack, each seed its own run in one group, which the registry's commands
show as runs; `mbpo resume` of any one continues the pack; a pack too large for memory is refused first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clihelpers import TINY, mbpo, one_error_line
from rich.console import Console

from mbpo_cli.cli.common import pack_table
from mbpo_cli.engine import loop
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.seed_run import SeedRun
from mbpo_cli.engine.state import RunState
from mbpo_cli.runs.layout import PACK_FILE, registry_file
from mbpo_cli.runs.registry import Registry


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A pack of two seeds (3 and 4) trained to 300 steps, then extended to 400 by resuming its second run."""
    runs = tmp_path_factory.mktemp("pack")
    trained = mbpo(runs, "train", *TINY, "--seed", "3", "--seeds", "2", "--name", "ip", "--json")
    assert trained.exit_code == 0, trained.output
    summaries = json.loads(trained.stdout)
    resumed = mbpo(runs, "resume", summaries[1]["id"], "--steps", "400", "--json")
    assert resumed.exit_code == 0, resumed.output
    return runs, [summaries, json.loads(resumed.stdout)]


def test_a_pack_is_one_run_per_seed_in_one_group(pack_dir: tuple[Path, list[dict]]) -> None:
    runs, (trained, _) = pack_dir
    assert [(s["name"], s["seed"], s["status"], s["env_steps"]) for s in trained] == [
        ("ip-s3", 3, "finished", 300), ("ip-s4", 4, "finished", 300)]
    with Registry.open(runs) as registry:
        members = [registry.get_run(s["id"]) for s in trained]
    assert members[0].group is not None and members[0].group == members[1].group
    assert [m.config["train"]["seed"] for m in members] == [3, 4]
    for summary in trained:
        assert json.loads((Path(summary["run_dir"]) / PACK_FILE).read_text())["runs"] == [s["id"] for s in trained]
        shown = mbpo(runs, "runs", "show", summary["id"], "--json")
        assert shown.exit_code == 0 and json.loads(shown.stdout)["seed"] == summary["seed"]


def test_resuming_one_run_of_a_pack_continues_the_pack(pack_dir: tuple[Path, list[dict]]) -> None:
    _, (trained, resumed) = pack_dir
    assert [s["id"] for s in resumed] == [s["id"] for s in trained]
    assert [(s["status"], s["env_steps"]) for s in resumed] == [("finished", 400), ("finished", 400)]


def test_a_pack_too_large_for_memory_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = mbpo(tmp_path, "train", "--preset", "humanoid", "--seeds", "100000", "--device", "cpu")
    line = one_error_line(result)
    assert "100000 seeds need about" in line and ("seed fits" in line or "seeds fit" in line)
    assert not registry_file(tmp_path).exists()


def test_what_trains_one_seed_per_process_refuses_seeds(tmp_path: Path) -> None:
    result = mbpo(tmp_path, "train", *TINY, "--seeds", "2", "--set", "train.pipeline=true")
    assert "train.pipeline" in one_error_line(result)
    assert not registry_file(tmp_path).exists()


def test_a_seed_that_fails_is_marked_failed_and_the_others_finish(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = loop.step_seed

    def failing(state: RunState, seed: SeedRun, action: np.ndarray) -> float | None:
        if seed.seed == 1 and state.env_step == 250:
            raise NumericalError(f"environment test returned a non-finite observation at env step {state.env_step}")
        return real_step(state, seed, action)

    monkeypatch.setattr(loop, "step_seed", failing)
    result = mbpo(tmp_path, "train", *TINY, "--seeds", "3", "--json")
    assert result.exit_code == 1, result.output
    summaries = json.loads(result.stdout)
    assert [(s["seed"], s["status"], s["env_steps"]) for s in summaries] == [
        (0, "finished", 300), (1, "failed", 250), (2, "finished", 300)]
    with Registry.open(tmp_path) as registry:
        failed = registry.get_run(summaries[1]["id"])
        assert "non-finite observation at env step 250" in (failed.error or "")
        assert [c.step for c in registry.checkpoints(summaries[0]["id"]) if c.kind != "best"][-1] == 300


def test_a_deleted_run_leaves_its_pack_and_the_others_resume(tmp_path: Path) -> None:
    trained = mbpo(tmp_path, "train", *TINY, "--seeds", "2", "--json")
    assert trained.exit_code == 0, trained.output
    first, second = json.loads(trained.stdout)
    deleted = mbpo(tmp_path, "runs", "delete", first["id"], "--yes")
    assert deleted.exit_code == 0, deleted.output
    resumed = mbpo(tmp_path, "resume", second["id"], "--steps", "400", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert [(s["id"], s["env_steps"]) for s in json.loads(resumed.stdout)] == [(second["id"], 400)]


def test_the_pack_summary_fits_80_columns_with_its_numbers_whole() -> None:
    summary = {"id": "7fbb3190", "name": "hopper-mbpo-s1234567-7fbb3190", "seed": 1234567, "status": "interrupted",
               "env_steps": 125000, "last_eval_return": -12345.6, "best_eval_return": 3456.7}
    console = Console(width=80, record=True)
    console.print(pack_table([summary, summary], 80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert all(value in text for value in ("7fbb3190", "1234567", "interrupted", "125,000", "-12,345.6", "3,456.7"))
