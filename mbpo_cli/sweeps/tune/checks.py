"""The checks a study file's numbers go through (an integer in a range, a finite number), each failure one line
naming the file and the key, and the most trials a study may ask for (which bounds every count of trials)."""

from __future__ import annotations

import math
from contextlib import suppress
from typing import Any

from mbpo_cli.config.errors import ConfigError, shown

MAX_TRIALS = 10_000
"""Most trials a study may ask for."""


def integer(value: Any, where: str, low: int, high: int) -> int:
    """An integer (not a bool) in [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {shown(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{where}: must be in [{low:,}, {high:,}], got {shown(value)}")
    return value


def number(value: Any, where: str) -> float:
    """A finite number; YAML's ``1e-4`` (a string to YAML 1.1, which wants ``1.0e-4``) is read as one too."""
    if isinstance(value, str):
        with suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {shown(value)}")
    return value
