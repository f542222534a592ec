"""Where a run trained from Python reports its progress: plain lines on stderr, one per evaluation, which a notebook
shows in the cell's output and a script's log keeps (the command line's live display needs a terminal)."""

from __future__ import annotations

import sys

from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.schema import Config
from mbpo_cli.runs.registry import RunInfo


def say(text: str) -> None:
    """One line on stderr, flushed."""
    print(text, file=sys.stderr, flush=True)


class LineReporter:
    """A `mbpo_cli.runs.reporting.Reporter` that writes a line when the run starts, one per evaluation (env step and
    return) and each message."""

    def __init__(self) -> None:
        self.target = 0
        """The run's total env steps."""

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """The run's id, name, task and steps."""
        self.target = config.train.steps
        say(f"run {run.id} ({run.name}): {config.label} on {config.env.id}, env steps {from_step:,} to "
            f"{self.target:,}")

    def step(self, env_step: int, episode_return: float | None) -> None:
        """Nothing (a line per env step would flood a notebook)."""

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """The env step and the evaluation's return."""
        value = metrics.get(metric_keys.EVAL_RETURN)
        shown = "no evaluation" if value is None else f"eval return {value:,.2f}"
        say(f"  env step {env_step:,}/{self.target:,}: {shown}")

    def message(self, text: str) -> None:
        """The message."""
        say(text)

    def stop(self) -> None:
        """Nothing."""
