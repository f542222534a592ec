"""Which gymnasium wrappers `env.wrappers` may name: the rule of a wrapper's `name`, checked when a config is loaded.

A wrapper is named by its class in `gymnasium.wrappers` (`RescaleAction`) or as `module:Class`; the latter is
imported only when the environment is made (as custom functions are), the former is looked up here. Gymnasium's
wrappers that keep state between steps which changes what the task returns are refused: a checkpoint restores the
task (its physics, random generator and step counter), not a wrapper's own state, so a resumed run would not
continue exactly.
"""

from __future__ import annotations

import difflib
import inspect

from mbpo_cli.config.rules import is_function_ref

STATEFUL_WRAPPERS: dict[str, str] = {
    "NormalizeObservation": "keeps running observation statistics",
    "NormalizeReward": "keeps running return statistics",
    "FrameStackObservation": "keeps the last observations",
    "DelayObservation": "keeps the last observations",
    "TimeAwareObservation": "counts the episode's steps",
    "StickyAction": "keeps the last action",
    "Autoreset": "resets by itself (the training loop resets the task)",
    "RecordVideo": "renders (training never renders; `mbpo eval --video` films)",
    "HumanRendering": "renders (training never renders; `mbpo eval --video` films)",
    "RenderCollection": "renders (training never renders; `mbpo eval --video` films)",
}
"""Gymnasium's wrappers that `env.wrappers` refuses, with the reason (each also breaks exact resume or training)."""


class WrapperLookupError(ValueError):
    """A wrapper name that names no usable wrapper: the message is one line, without the config key."""


def gymnasium_wrapper(name: str) -> type:
    """The class `gymnasium.wrappers.<name>`, or a WrapperLookupError saying why it is not usable."""
    import gymnasium as gym
    import gymnasium.wrappers as wrappers

    if name in STATEFUL_WRAPPERS:
        raise WrapperLookupError(f"{name} {STATEFUL_WRAPPERS[name]}, which checkpoints do not restore: not supported")
    known = sorted(n for n in wrappers.__all__ if n[:1].isupper() and n not in STATEFUL_WRAPPERS)
    if name not in wrappers.__all__:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "or module:Class for another wrapper"
        raise WrapperLookupError(f"{_echo(name)} is not a wrapper of gymnasium.wrappers ({hint})")
    try:
        found = getattr(wrappers, name)
    except ImportError as err:  # a wrapper whose optional dependency is missing (JaxToNumpy: jax)
        raise WrapperLookupError(f"{name} needs a missing package: {err}") from None
    if not (inspect.isclass(found) and issubclass(found, gym.Wrapper)):
        raise WrapperLookupError(f"gymnasium.wrappers.{name} is not a wrapper of one environment")
    return found


class WrapperName:
    """The rule of `env.wrappers[i].name`: a usable wrapper of `gymnasium.wrappers`, or `module:Class` (imported when
    the environment is made, not here)."""

    def problem(self, value: str) -> str | None:
        if not value:
            return "required: a wrapper of gymnasium.wrappers (e.g. RescaleAction) or module:Class"
        if ":" in value:
            return None if is_function_ref(value) else \
                f"expected a gymnasium wrapper's name or module:Class, got {_echo(value)}"
        try:
            gymnasium_wrapper(value)
        except WrapperLookupError as err:
            return str(err)
        return None


WRAPPER_NAME = WrapperName()


def _echo(name: str) -> str:
    """A user's wrapper name as an error echoes it: quoted, at most 100 characters."""
    return repr(name) if len(name) <= 100 else repr(name[:99] + "…")
