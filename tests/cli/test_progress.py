"""Honest progress: the ETA of `mbpo train` waits for timed training steps and moves with model fits; the speed
says whether it is exploration's or training's; a resumed run shows its last recorded evaluation; the summary's
steps/s is this session's steps over this session's time, and a stopped run's eval return is its last, not its
final one."""

import io
from datetime import UTC, datetime
from pathlib import Path

from clihelpers import TINY, train_runs
from rich.console import Console

from mbpo_cli.cli.common import run_summary
from mbpo_cli.cli.display import RichReporter, SessionEta, summary_table
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.runs.resume import resume_run
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
        assert _eta(reporter) == "exploring: 1 random step left"
        clock.now += 0.001
        reporter.step(100, None)
        for step in range(101, 301):
            clock.now += 0.1 + (5.0 if step % 50 == 0 else 0.0)  # a model fit every 50 steps
            reporter.step(step, None)
            if step == 199:
                assert _eta(reporter) == "ETA: timing training steps (99/200)"
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


def _screen(reporter: RichReporter) -> str:
    """What the live display shows now: the bar and the metrics line."""
    console = Console(file=io.StringIO(), width=200)
    assert reporter.progress is not None
    console.print(reporter.progress.get_renderable(), reporter.status)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_exploration_says_what_it_is_and_speeds_say_whose_they_are() -> None:
    """'ETA in 500 steps' read as a countdown, and exploration's fast random steps/s as the training speed."""
    config = resolve_config(preset="hopper", steps=1000, overrides=["train.init_steps=100"])
    clock = Clock()
    reporter = RichReporter(Console(file=io.StringIO()), clock=clock)
    reporter.start(_run(), config, 0)
    try:
        for step in range(1, 41):  # random exploration at 100 steps/s
            clock.now += 0.01
            reporter.step(step, None)
        screen = _screen(reporter)
        assert "exploring: 60 random steps left" in screen and "100.0 random steps/s" in screen
        assert "ETA" not in screen
        for step in range(41, 101):
            clock.now += 0.01
            reporter.step(step, None)
        for step in range(101, 121):  # training at 4 steps/s: its speed, not the session's average
            clock.now += 0.25
            reporter.step(step, None)
        screen = _screen(reporter)
        assert "4.0 training steps/s" in screen and "random" not in screen
        assert "ETA: timing training steps (20/500)" in screen  # 2 model cycles of 250 steps
    finally:
        reporter.stop()


def test_a_finished_bar_shows_no_eta() -> None:
    config = resolve_config(preset="hopper", steps=400, overrides=["train.init_steps=100"])
    clock = Clock()
    reporter = RichReporter(Console(file=io.StringIO()), clock=clock)
    reporter.start(_run(), config, 0)
    try:
        for step in range(1, 401):
            clock.now += 1.0
            reporter.step(step, None)
        assert _eta(reporter) == ""
        assert "ETA" not in _screen(reporter)
    finally:
        reporter.stop()


def test_small_model_losses_keep_their_digits() -> None:
    """CartPole's model loss printed as 0.0000."""
    reporter = RichReporter(Console(file=io.StringIO()))
    reporter.epoch(1000, {"eval_return": 500.0, "model_holdout_loss": 2.345e-5, "rollout_k": 1.0})
    assert "model loss 2.35e-05" in reporter.status.plain
    reporter.epoch(2000, {"eval_return": 500.0, "model_holdout_loss": 0.1234, "rollout_k": 1.0})
    assert "model loss 0.123" in reporter.status.plain


def test_a_resumed_run_shows_its_last_recorded_evaluation(tmp_path: Path) -> None:
    """A resumed run said "waiting for the first evaluation" though it had some, and its summary's eval return
    was None when the session ended before evaluating: both now come from the registry."""
    run_id = train_runs(tmp_path, {"a": TINY})["a"]
    with Registry.open(tmp_path) as registry:
        recorded = registry.metrics(run_id, "eval_return")[-1]
        registry.set_status(run_id, "interrupted")  # as if killed after its last checkpoint (at its last step)

        class Display(RichReporter):
            """The Rich display, remembering the metrics line it showed first."""

            first_line: str | None = None

            def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
                super().epoch(env_step, metrics)
                self.first_line = self.first_line or self.status.plain

        display = Display(Console(file=io.StringIO(), width=120))
        outcome = resume_run(registry, tmp_path, run_id, display)
    step, _, value = recorded
    assert display.first_line is not None
    assert display.first_line.startswith(f"last recorded: step {step:,}  eval {value:,.1f} ± ")
    assert outcome.env_steps_this_session == 0
    assert run_summary(outcome, tmp_path)["final_eval_return"] == value


def test_a_stopped_runs_summary_says_last_eval_return() -> None:
    """An interrupted run's summary said "final eval return"."""
    outcome = Outcome(run=_run(env_steps=800), status="interrupted", exit_code=130, wall_seconds=10.0,
                      env_steps_this_session=800, session_seconds=10.0, last_metrics={"eval_return": 12.5})
    summary = run_summary(outcome, Path("runs"))
    assert summary["last_eval_return"] == 12.5 and "final_eval_return" not in summary
    console = Console(file=io.StringIO(), width=80)
    console.print(summary_table(summary))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "last eval return" in text and "final" not in text
    finished = run_summary(Outcome(run=_run(env_steps=1000), status="finished", exit_code=0, wall_seconds=10.0,
                                   env_steps_this_session=1000, session_seconds=10.0,
                                   last_metrics={"eval_return": 12.5}), Path("runs"))
    assert finished["final_eval_return"] == 12.5 and "last_eval_return" not in finished
