"""The engine's errors that a user sees as one line."""

from __future__ import annotations


class EnvError(ValueError):
    """An environment that cannot be used: the message is one line."""


class NumericalError(RuntimeError):
    """A NaN or inf appeared; the message names the phase and the env step."""
