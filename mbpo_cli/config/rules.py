"""The rules a config value must follow, declared beside its field in the schema and checked by
`mbpo_cli.config.validation`.

A field lists its rules in its metadata (`field(default=1e-3, metadata=checked(POSITIVE))`); each rule says what is
wrong with a value in the words of the error message (`must be positive, got 0`), which the validator prefixes with
the source and the key. A value of None (an optional setting left unset) passes every rule. A section that matters
to one algorithm only is marked with :func:`only_for` on the top-level field that holds it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import Field, dataclass
from typing import Any, Protocol

from mbpo_cli.config.errors import shown

RULES = "rules"
"""The metadata key of a field's rules."""
ONLY_FOR = "only_for_algo"
"""The metadata key of a section checked only when `algo` has this value."""

Number = int | float


class Rule(Protocol):
    """A condition on one value."""

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value`, in the words of the error message; None when it follows the rule."""


def checked(*rules: Rule) -> dict[str, tuple[Rule, ...]]:
    """A field's metadata: the rules its value follows, checked in order (the first broken one is reported)."""
    return {RULES: rules}


def only_for(algo: str) -> dict[str, str]:
    """A section field's metadata: its rules are checked only when the config's `algo` is `algo`."""
    return {ONLY_FOR: algo}


def rules_of(item: Field[Any]) -> tuple[Rule, ...]:
    """The rules declared on a dataclass field (none for a field without)."""
    rules: tuple[Rule, ...] = item.metadata.get(RULES, ())
    return rules


def algo_of(item: Field[Any]) -> str | None:
    """The algorithm a section field is checked for alone (None: for every algorithm)."""
    algo: str | None = item.metadata.get(ONLY_FOR)
    return algo


@dataclass(frozen=True)
class Positive:
    """Above zero (and finite, with `finite`)."""

    finite: bool = False

    def problem(self, value: Number) -> str | None:
        if self.finite:
            return None if 0.0 < value < math.inf else f"must be positive and finite, got {value}"
        return None if value > 0 else f"must be positive, got {value}"


@dataclass(frozen=True)
class AtLeast:
    """At or above `low`."""

    low: Number

    def problem(self, value: Number) -> str | None:
        return None if value >= self.low else f"must be >= {self.low}, got {value}"


@dataclass(frozen=True)
class AtMost:
    """At or below `high` (the message echoes the value only with `echo`)."""

    high: Number
    echo: bool = True

    def problem(self, value: Number) -> str | None:
        if value <= self.high:
            return None
        return f"must be at most {self.high}, got {value}" if self.echo else f"must be at most {self.high}"


@dataclass(frozen=True)
class Within:
    """In an interval; `ends` says which ends belong to it, as the message writes it: `[]`, `[)`, `(]` or `()`."""

    low: Number
    high: Number
    ends: str = "[]"

    def problem(self, value: Number) -> str | None:
        above = value >= self.low if self.ends[0] == "[" else value > self.low
        below = value <= self.high if self.ends[1] == "]" else value < self.high
        if above and below:
            return None
        return f"must be in {self.ends[0]}{self.low}, {self.high}{self.ends[1]}, got {value}"


@dataclass(frozen=True)
class AllAtLeast:
    """Every value of a list at or above `low`."""

    low: Number

    def problem(self, value: tuple[Number, ...]) -> str | None:
        return None if all(v >= self.low for v in value) else f"must be >= {self.low}"


@dataclass(frozen=True)
class Matches:
    """A text that matches `pattern` whole; `expected` says what in the message."""

    pattern: re.Pattern[str]
    expected: str

    def problem(self, value: str) -> str | None:
        return None if self.pattern.fullmatch(value) else f"expected {self.expected}, got {shown(value)}"


@dataclass(frozen=True)
class NameOrFunction:
    """One of `names`, or a `package.module:function` reference (checked for importability when a run starts,
    not here); `expected` says what in the message."""

    names: tuple[str, ...]
    expected: str

    def problem(self, value: str) -> str | None:
        ok = value in self.names or is_function_ref(value)
        return None if ok else f"expected {self.expected}, got {shown(value)}"


@dataclass(frozen=True)
class Holds:
    """A condition on a list of values that `test` checks, stated in words (`need ...`) in the message."""

    test: Callable[[tuple[Number, ...]], bool]
    need: str

    def problem(self, value: tuple[Number, ...]) -> str | None:
        return None if self.test(value) else f"{self.need}, got {list(value)}"


def is_function_ref(text: str) -> bool:
    """`package.module:function` (checked for importability when a run starts, not here)."""
    module, sep, name = text.partition(":")
    return bool(sep) and all(p.isidentifier() for p in module.split(".")) and name.isidentifier()


POSITIVE = Positive()
POSITIVE_FINITE = Positive(finite=True)
NON_NEGATIVE = AtLeast(0)
UNIT = Within(0, 1, "[]")
"""[0, 1]: a fraction or a probability."""
OPEN_UNIT = Within(0, 1, "()")
"""(0, 1): a fraction that leaves something on both sides."""
SMOOTHING = Within(0, 1, "(]")
"""(0, 1]: a target network's smoothing coefficient (1: a hard copy)."""
DISCOUNT = Within(0, 1, "[)")
"""[0, 1): a discount or a dropout rate."""

