"""What the training loop reports through its callback: one event type per kind of news."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepEvent:
    """After every real env step."""

    env_step: int
    episode_return: float | None
    """The return of the episode that just ended, if one did."""
    member: int = 0
    """Which seed of the pack (its index in the pack's seed order; 0 for a lone run)."""


@dataclass(frozen=True)
class EpochEvent:
    """At each epoch end (and at the last step): the epoch's metrics."""

    env_step: int
    epoch: int
    metrics: dict[str, float]
    member: int = 0
    """Which seed of the pack (its index in the pack's seed order; 0 for a lone run)."""


@dataclass(frozen=True)
class RolloutEvent:
    """After each adaptive rollout (`rollout.adaptive`): its realized branch lengths and threshold."""

    env_step: int
    metrics: dict[str, float]
    member: int = 0
    """Which seed of the pack (its index in the pack's seed order; 0 for a lone run)."""


@dataclass(frozen=True)
class NoticeEvent:
    """Something the user should know about how the run executes (said once, one line)."""

    env_step: int
    text: str


@dataclass(frozen=True)
class SeedFailedEvent:
    """A seed of a pack whose numbers went non-finite: it has left the pack, which trains on without it (a lone run,
    or the last seed of a pack, raises `NumericalError` instead)."""

    env_step: int
    member: int
    """Which seed (its index in the pack as built)."""
    message: str


Event = StepEvent | EpochEvent | RolloutEvent | NoticeEvent | SeedFailedEvent
Callback = Callable[[Event], None]
