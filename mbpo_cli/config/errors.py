"""The config layer's error and how it echoes a user's values: one line, naming the file (or source) and the key."""

from __future__ import annotations

from typing import Any

MAX_ECHO = 200
"""Longest echo of a user's value in an error message (longer ones are cut, ending in "…")."""


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the file and the key."""


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """`text` cut to at most `limit` characters, ending in "…" where it was cut: how a user's value (or a whole
    error line, with a larger limit) is echoed."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: Any) -> str:
    """A user's value as an error message echoes it: its repr, clipped to :data:`MAX_ECHO` characters."""
    try:
        return clip(repr(value))
    except ValueError:  # an integer of more digits than Python converts to text
        return f"a {type(value).__name__} too large to show"
