"""Exact resume of DHMBPO runs: a run stopped after any checkpoint (in process, or killed with SIGKILL and resumed
with `mbpo resume`) reaches the same metrics at every step and the same final actor-critic, model and labels as
the same-seed run trained without interruption (on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from dhmbpo_tiny import TINY_DHMBPO

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.events import EpochEvent, Event
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import RunState, build_run
from mbpo_cli.runs.checkpoint import capture, load_file, restore, save_file
from mbpo_cli.runs.layout import checkpoint_file
from mbpo_cli.runs.registry import Registry

TOTAL = 400
Metrics = list[tuple[int, dict[str, float]]]


def run_until(state: RunState, stop_at: int | None = None) -> Metrics:
    """Train `state` to its total (or stop after env step `stop_at`); the epoch metrics without timings."""
    metrics: Metrics = []

    def on_event(event: Event) -> None:
        if isinstance(event, EpochEvent):
            metrics.append((event.env_step, {k: v for k, v in event.metrics.items() if not k.startswith("time_")}))

    train(state, on_event, should_stop=None if stop_at is None else (lambda: state.env_step >= stop_at))
    return metrics


def new_run() -> RunState:
    return build_run(resolve_config(preset="inverted_pendulum", algo="dhmbpo", steps=TOTAL, seed=1,
                                    overrides=[*TINY_DHMBPO, "train.device=cpu"]))


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal tensors (bit for bit) and plain values, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, where


def dhmbpo_state(state: RunState) -> dict[str, Any]:
    """Everything DHMBPO adds to a run: actor-critic, model with normalizers, labels and weights, generators."""
    assert state.double_horizon is not None
    return {"agent": state.agent.state_dict(), "model": state.double_horizon.model.state_dict(),
            "labels": state.double_horizon.labels.state_dict(),
            "generators": {k: g.get_state() for k, g in state.lone.generators.items()}}


@pytest.fixture(scope="session")
def straight_run() -> tuple[RunState, Metrics]:
    state = new_run()
    return state, run_until(state)


@pytest.mark.parametrize("stop_at", [250, 300], ids=["mid-iteration", "after-a-burst"])
def test_a_checkpoint_continues_exactly(straight_run: tuple[RunState, Metrics], stop_at: int,
                                        tmp_path: Path) -> None:
    reference, expected = straight_run
    first = new_run()
    before = run_until(first, stop_at)
    assert first.env_step == stop_at and first.double_horizon is not None
    assert first.double_horizon.labels.seen == (200 if stop_at == 250 else 300)
    path = tmp_path / "ckpt.pt"
    _, digest = save_file(capture(first), path)
    second = new_run()
    assert restore(second, load_file(path, digest)) is True
    assert_same(dhmbpo_state(second), dhmbpo_state(first))
    after = run_until(second)
    assert [s for s, _ in before + after] == [s for s, _ in expected] == list(range(100, TOTAL + 1, 100))
    for (step, got), (_, want) in zip(before + after, expected, strict=True):
        assert got == want, f"metrics differ at env step {step}"
    assert_same(dhmbpo_state(second), dhmbpo_state(reference))


# ---------------------------------------------------------------------------------------------
# kill -9, then `mbpo resume`, through the console script
# ---------------------------------------------------------------------------------------------

MBPO = str(Path(sys.executable).with_name("mbpo"))
TRAIN = ["train", "--preset", "inverted_pendulum", "--algo", "dhmbpo", "--seed", "1", "--steps", str(TOTAL),
         *(arg for item in TINY_DHMBPO for arg in ("--set", item)), "--json"]


def mbpo(runs_dir: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "MBPO_REGISTRY_URL"}
    result = subprocess.run([MBPO, "--runs-dir", str(runs_dir), *args], capture_output=True, text=True, env=env,
                            cwd=runs_dir, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def final_checkpoint(registry: Registry, run_id: str, runs_dir: Path) -> dict[str, Any]:
    (final,) = [c for c in registry.checkpoints(run_id) if c.kind == "final"]
    return load_file(checkpoint_file(runs_dir, final.path), final.sha256)


def test_kill9_then_resume_is_exact(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MBPO_REGISTRY_URL"}
    with Registry.open(tmp_path) as registry:
        reference = mbpo(tmp_path, *TRAIN, "--name", "straight")
        proc = subprocess.Popen([MBPO, "--runs-dir", str(tmp_path), *TRAIN, "--name", "killed"], env=env,
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while not any(c.step >= 300 for r in registry.list_runs() if r.name == "killed"
                          for c in registry.checkpoints(r.id) if c.kind == "periodic"):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        killed = registry.get_run("killed")
        assert killed.env_steps < TOTAL
        resumed = mbpo(tmp_path, "resume", killed.id, "--json")
        assert resumed["status"] == "finished" and resumed["env_steps"] == TOTAL

        def comparable(run_id: str) -> list[tuple[int, str, float]]:
            return [row for row in registry.metrics(run_id) if not row[1].startswith(("time_", "wall_seconds"))]

        assert comparable(killed.id) == comparable(reference["id"])
        got = final_checkpoint(registry, killed.id, tmp_path)
        want = final_checkpoint(registry, reference["id"], tmp_path)
        for key in ("agent", "double_horizon", "real_buffer", "model_info", "counters"):
            assert_same(got[key], want[key], key)
        assert_same(got["rng"]["generators"], want["rng"]["generators"], "generators")
