"""Honest progress: the ETA of `mbpo train` waits for timed training steps and moves with model fits; the
summary's steps/s is this session's steps over this session's time."""

import io
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from mbpo_cli.cli.common import run_summary
from mbpo_cli.cli.display import RichReporter, SessionEta
from mbpo_cli.config.load import resolve_config
from mbpo_cli.runs.registry import RunInfo
from mbpo_cli.runs.session import Outcome


class Clock:
    """A settable time source."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(env_steps: int = 0, wall_seconds: float = 0.0) -> RunInfo:
    now = datetime.now(UTC)
    return RunInfo(id="abcd1234", name="r", preset=None, env_id="Hopper-v5", algo="mbpo", seed=0, status="running",
                   config={}, group=None, variant=None, created_at=now, started_at=now, ended_at=None,
                   heartbeat_at=None, host="h", device="cpu", version="0", git_commit=None, command="mbpo train",
                   error=None, env_steps=env_steps, target_steps=1000, wall_seconds=wall_seconds)


def _eta(reporter: RichReporter) -> str:
    assert reporter.progress is not None
    column = next(c for c in reporter.progress.columns if isinstance(c, SessionEta))
    return column.render(reporter.progress.tasks[0]).plain


def test_eta_waits_for_training_steps_and_counts_model_fits_as_they_pass() -> None:
    """Rich's ETA (a recent-window rate) said 0:00:01 during the first model fit and later swung from 9 minutes
    to 3 hours. This one: nothing during exploration, nothing until 200 training steps are timed, then the
    session's average rate since exploration, which grows while a model fit holds the steps still."""
    config = resolve_config(preset="hopper", steps=1000, overrides=["train.init_steps=100",
                                                                    "rollout.train_freq=50"])
    clock = Clock()
    reporter = RichReporter(Console(file=io.StringIO()), clock=clock)
    reporter.start(_run(), config, 0)
    try:
        for step in range(1, 100):  # random exploration: fast, says nothing about the rest
            clock.now += 0.001
            reporter.step(step, None)
        assert _eta(reporter) == "ETA after exploration"
        clock.now += 0.001
        reporter.step(100, None)
        for step in range(101, 301):
            clock.now += 0.1 + (5.0 if step % 50 == 0 else 0.0)  # a model fit every 50 steps
            reporter.step(step, None)
            if step == 199:
                assert _eta(reporter) == "ETA in 101 steps"
        # 200 training steps in 20 s of steps and 4 model fits (20 s): 5 steps/s, 700 steps to go
        assert _eta(reporter) == "ETA 0:02:20"
        clock.now += 30.0  # a long model fit: no step, the estimate grows with it (200 steps in 70 s)
        assert _eta(reporter) == "ETA 0:04:05"
    finally:
        reporter.stop()


def test_eta_of_a_resumed_run_starts_with_the_session() -> None:
    config = resolve_config(preset="hopper", steps=2000, overrides=["train.init_steps=100"])
    clock = Clock()
    reporter = RichReporter(Console(file=io.StringIO()), clock=clock)
    reporter.start(_run(env_steps=500), config, 500)
    try:
        for step in range(501, 1001):
            clock.now += 1.0
            reporter.step(step, None)
        assert _eta(reporter) == "ETA 0:16:40"  # 500 steps in 500 s this session, 1,000 to go
    finally:
        reporter.stop()


def test_summary_steps_per_second_is_this_sessions() -> None:
    """After Ctrl-C the summary said 1,986 steps/s while the bar said 4.3; after resume it divided this session's
    steps by the whole run's time."""
    outcome = Outcome(run=_run(env_steps=800, wall_seconds=1000.0), status="interrupted", exit_code=130,
                      wall_seconds=1000.0, env_steps_this_session=300, session_seconds=60.0,
                      last_metrics={"wall_seconds": 0.15})
    summary = run_summary(outcome, Path("runs"))
    assert summary["steps_per_second"] == 5.0
    assert summary["session_seconds"] == 60.0 and summary["wall_seconds"] == 1000.0
