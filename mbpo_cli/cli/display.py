"""The Rich training display: a progress bar with steps/s and ETA, a live metrics line, a summary table."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

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


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


class RichReporter:
    """Live progress for `mbpo train` and `mbpo resume` (implements runner.Reporter)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Output(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("env steps"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.status = Text("waiting for the first evaluation ...", style="dim")
        self.live: Live | None = None
        self.task: Any = None
        self.from_step = 0
        self.started_at = 0.0
        self.last_episode: float | None = None

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """Show the run header and start the live display."""
        self.from_step = from_step
        what = f"{config.label.upper()} on {config.env.id}"
        self.console.print(f"[bold]{what}[/]  run [cyan]{run.id}[/] ({run.name})  seed {config.train.seed}  "
                           f"device {run.device}")
        self.task = self.progress.add_task(run.id, total=config.train.steps, completed=from_step, rate="")
        self.live = Live(Group(self.progress, self.status), console=self.console, refresh_per_second=4,
                         transient=False)
        self.live.start()
        self.started_at = self.progress.get_time()

    def step(self, env_step: int, episode_return: float | None) -> None:
        """Advance the bar."""
        if episode_return is not None:
            self.last_episode = episode_return
        elapsed = max(self.progress.get_time() - self.started_at, 1e-9)
        rate = (env_step - self.from_step) / elapsed
        self.progress.update(self.task, completed=env_step, rate=f"{rate:,.1f} steps/s")

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """Refresh the metrics line."""
        parts = [
            f"step {env_step:,}",
            f"eval {_fmt(metrics.get('eval_return'))} ± {_fmt(metrics.get('eval_return_std'))}",
            f"train episode {_fmt(self.last_episode)}",
        ]
        if "model_holdout_loss" in metrics:
            parts.append(f"model loss {metrics['model_holdout_loss']:.4f}")
            parts.append(f"k {int(metrics.get('rollout_k', 0))}")
        if "done_holdout_recall" in metrics:
            parts.append(f"done recall {_fmt(metrics['done_holdout_recall'], 2)}")
        if "alpha" in metrics:
            parts.append(f"alpha {metrics['alpha']:.3f}")
        if "epsilon" in metrics:
            parts.append(f"epsilon {metrics['epsilon']:.3f}")
        self.status = Text("  ".join(parts))
        if self.live is not None:
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
