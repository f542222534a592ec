"""The engine's errors that a user sees as one line."""

from __future__ import annotations


class EnvError(ValueError):
    """An environment that cannot be used: the message is one line."""


class NumericalError(RuntimeError):
    """A NaN or inf appeared; the message names the phase and the env step."""


class CustomFunctionError(RuntimeError):
    """A custom termination or reward function (`module:function`) that passed the check at start returned something
    unusable during training: the message names the function and what it returned, and the training loop adds the
    env step it happened at (`env_step`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.env_step: int | None = None
        """The env step of the training loop when it failed (None outside the loop, as in `mbpo bench`)."""

    def __str__(self) -> str:
        return self.message if self.env_step is None else f"{self.message}, at env step {self.env_step}"
