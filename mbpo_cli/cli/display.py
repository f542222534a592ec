"""The Rich training display: a progress bar with steps/s and ETA, a live metrics line, a summary table."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import Config
from mbpo_cli.runs.registry import RunInfo


class Output(Console):
    """A Rich console that outlives its reader (`mbpo train | tee` whose tee stopped): once the pipe is closed
    it writes nothing more, and the command finishes what it was doing (a checkpoint, an exit status)."""

    def on_broken_pipe(self) -> None:
        """Go quiet and point the stream at /dev/null, instead of Rich's default of exiting with status 1."""
        self.quiet = True
        stream = sys.stderr if self.stderr else sys.stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class SessionEta(ProgressColumn):
    """Time left at this session's average rate since the end of the random exploration.

    Exploration steps are cheap and model training comes in bursts, so neither the whole-session rate nor a
    recent-window rate (Rich's default) predicts the rest: this column says how much exploration is left while
    it lasts, then waits until `min_steps` training steps of this session have been timed (model fits
    included), says how far that timing is, and then divides. Time spent in a model fit counts as it passes, so
    the estimate moves smoothly rather than freezing and jumping. A finished bar shows no estimate.
    """

    def __init__(self, min_steps: int, init_steps: int) -> None:
        super().__init__()
        self.min_steps = min_steps
        self.init_steps = init_steps

    def render(self, task: Task) -> Text:
        """'ETA h:mm:ss', or what the estimate waits for."""
        if task.finished:
            return Text("")
        phase = task.fields.get("phase")
        if phase is None:
            left = max(self.init_steps - task.completed, 0)
            return Text(f"exploring: {left:,.0f} random step{'' if left == 1 else 's'} left", style="dim")
        started_at, started_step = phase
        done = task.completed - started_step
        if done < self.min_steps:
            return Text(f"ETA: timing training steps ({done:,.0f}/{self.min_steps:,})", style="dim")
        rate = done / max(task.get_time() - started_at, 1e-9)
        left = max((task.total or 0) - task.completed, 0) / rate
        return Text(f"ETA {_duration(left)}", style="progress.remaining")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _loss(value: float) -> str:
    """A loss to 3 significant digits, however small (a CartPole model's 0.00002 is not 0.0000)."""
    return f"{value:.3g}"


class RichReporter:
    """Live progress for `mbpo train` and `mbpo resume` (implements runner.Reporter)."""

    def __init__(self, console: Console | None = None, clock: Callable[[], float] | None = None) -> None:
        self.console = console or Output(stderr=True)
        self.clock = clock
        self.progress: Progress | None = None
        self.status = Text("waiting for the first evaluation ...", style="dim")
        self.live: Live | None = None
        self.task: Any = None
        self.from_step = 0
        self.init_steps = 0
        self.started_at = 0.0
        self.last_episode: float | None = None

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """Show the run header and start the live display."""
        self.from_step = from_step
        self.init_steps = config.train.init_steps
        what = f"{config.label.upper()} on {config.env.id}"
        self.console.print(f"[bold]{what}[/]  run [cyan]{run.id}[/] ({run.name})  seed {config.train.seed}  "
                           f"device {run.device}")
        cycle = config.rollout.train_freq if config.algo == "mbpo" else 0  # steps between two model fits
        if config.algo == "dhmbpo":
            cycle = config.dhmbpo.iteration_steps  # steps between two learning bursts
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("env steps"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            SessionEta(min_steps=max(2 * cycle, 200), init_steps=self.init_steps),
            console=self.console,
            get_time=self.clock,
        )
        self.started_at = self.progress.get_time()
        phase = (self.started_at, from_step) if from_step >= self.init_steps else None
        self.task = self.progress.add_task(run.id, total=config.train.steps, completed=from_step, rate="",
                                           phase=phase)
        self.live = Live(Group(self.progress, self.status), console=self.console, refresh_per_second=4,
                         transient=False)
        self.live.start()

    def step(self, env_step: int, episode_return: float | None) -> None:
        """Advance the bar and its speed: random steps/s while exploring, then training steps/s since the end of
        the exploration (this session's); the first step after exploration starts the clock of the ETA."""
        if self.progress is None:
            return
        if episode_return is not None:
            self.last_episode = episode_return
        now = self.progress.get_time()
        phase = self.progress.tasks[0].fields.get("phase")
        fields: dict[str, Any] = {}
        if phase is None and env_step >= self.init_steps:
            phase = fields["phase"] = (now, env_step)
        if phase is None:
            rate = (env_step - self.from_step) / max(now - self.started_at, 1e-9)
            fields["rate"] = f"{rate:,.1f} random steps/s"
        elif env_step > phase[1]:
            rate = (env_step - phase[1]) / max(now - phase[0], 1e-9)
            fields["rate"] = f"{rate:,.1f} training steps/s"
        self.progress.update(self.task, completed=env_step, **fields)

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """Refresh the metrics line (a resumed run's last recorded epoch, at or before its first step, says so)."""
        parts = [
            f"{'last recorded: ' if 0 < env_step <= self.from_step else ''}step {env_step:,}",
            f"eval {_fmt(metrics.get(metric_keys.EVAL_RETURN))} ± {_fmt(metrics.get(metric_keys.EVAL_RETURN_STD))}",
            f"train episode {_fmt(self.last_episode)}",
        ]
        if metric_keys.MODEL_HOLDOUT_LOSS in metrics:
            parts.append(f"model loss {_loss(metrics[metric_keys.MODEL_HOLDOUT_LOSS])}")
            parts.append(f"k {int(metrics.get('rollout_k', 0))}")
        if metric_keys.DONE_HOLDOUT_RECALL in metrics:
            parts.append(f"done recall {_fmt(metrics[metric_keys.DONE_HOLDOUT_RECALL], 2)}")
        if metric_keys.ALPHA in metrics:
            parts.append(f"alpha {metrics[metric_keys.ALPHA]:.3f}")
        if metric_keys.EPSILON in metrics:
            parts.append(f"epsilon {metrics[metric_keys.EPSILON]:.3f}")
        self.status = Text("  ".join(parts))
        if self.live is not None and self.progress is not None:
            self.live.update(Group(self.progress, self.status))

    def message(self, text: str) -> None:
        """A line above the live display."""
        self.console.print(text)

    def stop(self) -> None:
        """End the live display."""
        if self.live is not None:
            self.live.stop()
            self.live = None
            if not self.console.is_terminal:  # Live ends its last line only on a terminal
                self.console.line()


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run summary as a two-column table."""
    table = Table(title="Run summary", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:,.2f}"
        table.add_row(key.replace("_", " "), str(value))
    return table


class PackProgress:
    """Live progress of a pack of seeds trained in one process: one bar for the pack's env steps (one ETA, driven by
    its first seed), a line per seed with its latest evaluation. `reporter(i)` reports seed `i`'s run."""

    def __init__(self, seeds: int, console: Console | None = None, clock: Callable[[], float] | None = None) -> None:
        self.bar = RichReporter(console, clock)
        self.lines: list[Text] = [Text("waiting for the first evaluation ...", style="dim") for _ in range(seeds)]
        self.labels = [""] * seeds

    def reporter(self, member: int) -> PackSeedReporter:
        """The reporter of seed `member`'s run."""
        return PackSeedReporter(self, member)

    def show(self) -> None:
        """Redraw the per-seed lines under the bar."""
        if self.bar.live is not None and self.bar.progress is not None:
            self.bar.live.update(Group(self.bar.progress, *self.lines))


class PackSeedReporter:
    """One seed's run in a `PackProgress` (implements runs.reporting.Reporter)."""

    def __init__(self, pack: PackProgress, member: int) -> None:
        self.pack = pack
        self.member = member

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """The first seed's header and the bar; every seed's run in its own line."""
        self.pack.labels[self.member] = f"seed {config.train.seed}  run {run.id}"
        if self.member == 0:
            self.pack.bar.start(run, config, from_step)
        else:
            self.pack.bar.console.print(f"  and seed {config.train.seed}: run [cyan]{run.id}[/] ({run.name})")
        self.pack.lines[self.member] = Text(f"{self.pack.labels[self.member]}  waiting for the first evaluation",
                                            style="dim")
        self.pack.show()

    def step(self, env_step: int, episode_return: float | None) -> None:
        """The pack's bar follows the first seed (every seed takes the same steps)."""
        if self.member == 0:
            self.pack.bar.step(env_step, episode_return)

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """This seed's line: its latest evaluation."""
        self.pack.lines[self.member] = Text(
            f"{self.pack.labels[self.member]}  step {env_step:,}  eval {_fmt(metrics.get(metric_keys.EVAL_RETURN))} "
            f"± {_fmt(metrics.get(metric_keys.EVAL_RETURN_STD))}")
        self.pack.show()

    def message(self, text: str) -> None:
        """A line above the live display."""
        self.pack.bar.message(text)

    def stop(self) -> None:
        """The display ends with the first seed's run."""
        if self.member == 0:
            self.pack.show()
            self.pack.bar.stop()
