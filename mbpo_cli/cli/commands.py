"""The Click classes behind every `mbpo` command and group: a flag shows no value placeholder in `--help`.

Typer's help prints each option's type (`<int>`, `<str>`), and `<bool>` beside a flag such as `--json`, as if it
took a value. These classes give flags an empty placeholder; options that take a value keep theirs.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup


def _flags_bare(params: list[Any]) -> list[Any]:
    """`params`, with every on/off flag's metavar set to empty (so help shows no type beside it). Typer's
    parameters are its own vendored Click's, hence the duck typing."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose flags show no `<bool>` in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, help option included, flags without a placeholder."""
        return _flags_bare(super().get_params(ctx))


class Group(TyperGroup):
    """A group (the `mbpo` app, `mbpo runs`) whose flags show no `<bool>` in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, help option included, flags without a placeholder."""
        return _flags_bare(super().get_params(ctx))
