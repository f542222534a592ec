"""Where a training session's progress goes: the `Reporter` protocol the CLI's display implements, a silent one for
machine-readable output, and `SafeReporter`, which lets the display fail without failing the run."""

from __future__ import annotations

import sys
from typing import Any, Protocol

from mbpo_cli.config.schema import Config
from mbpo_cli.runs.registry import RunInfo


class Reporter(Protocol):
    """Where progress goes (the Rich display, or nothing in --json mode)."""

    def start(self, run: RunInfo, config: Config, from_step: int) -> None: ...
    def step(self, env_step: int, episode_return: float | None) -> None: ...
    def epoch(self, env_step: int, metrics: dict[str, float]) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class SilentReporter:
    """No progress display (machine-readable output modes); messages and warnings go to stderr, one line each."""

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """Nothing."""

    def step(self, env_step: int, episode_return: float | None) -> None:
        """Nothing."""

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """Nothing."""

    def message(self, text: str) -> None:
        """A line on stderr (stdout stays machine-readable)."""
        print(text, file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Nothing."""


class SafeReporter:
    """A reporter whose output may fail (a closed pipe, a full disk) without failing the run: the first
    OSError ends the display, and training, checkpoints and the registry carry on."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter: Reporter | None = reporter

    def _call(self, name: str, *args: Any) -> None:
        if self.reporter is None:
            return
        try:
            getattr(self.reporter, name)(*args)
        except OSError:
            self.reporter = None

    def start(self, run: RunInfo, config: Config, from_step: int) -> None:
        """The display's start, if it can still write."""
        self._call("start", run, config, from_step)

    def step(self, env_step: int, episode_return: float | None) -> None:
        """The display's step, if it can still write."""
        self._call("step", env_step, episode_return)

    def epoch(self, env_step: int, metrics: dict[str, float]) -> None:
        """The display's epoch, if it can still write."""
        self._call("epoch", env_step, metrics)

    def message(self, text: str) -> None:
        """The display's message, if it can still write."""
        self._call("message", text)

    def stop(self) -> None:
        """The display's stop, if it can still write."""
        self._call("stop")
