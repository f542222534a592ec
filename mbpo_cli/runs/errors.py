"""The runs layer's refusal, and how a failure is written into a run's record."""

from __future__ import annotations


class RunError(RuntimeError):
    """A refusal or problem the user can act on (one line; the CLI exits 2)."""


def error_line(err: BaseException) -> str:
    """`Kind: first line` of an error, as a failed run's record holds it (`KeyboardInterrupt` alone)."""
    text = str(err).strip().splitlines()
    kind = type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return "KeyboardInterrupt"
    return f"{kind}: {text[0]}" if text else kind
