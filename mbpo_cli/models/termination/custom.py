"""User code named in the config as `module:function`: a custom termination (`env.termination`) or reward
(`env.reward`) function, imported with the working directory importable and checked at every call.

The two are one kind of thing (a user's vectorized function that model rollouts and diagnostics call, checked the
same way), so the reward's wrapper lives here beside the termination's rather than in a module of its own.
A function that passes the check at start (`mbpo_cli.engine.task.check_functions`) and misbehaves later is caught
at the call that misbehaves: a CustomFunctionError naming it, never a crash elsewhere.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.schema import Config

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""`(obs N x D, act N x A, next_obs N x D) -> reward N`."""


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


def working_directory_importable() -> None:
    """Let the working directory's modules be imported (appended to `sys.path`, as `python -m` does): where a
    custom `module:function` and the module of a `module:EnvId` environment id are found."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.append(cwd)


def import_function(ref: str, key: str) -> Callable[..., torch.Tensor]:
    """The function `package.module:name` (the working directory importable, as for `python -m`)."""
    module_name, _, name = ref.partition(":")
    working_directory_importable()
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import-time failure of user code is the user's to fix
        raise ConfigError(f"{key}: cannot import {module_name!r} for {ref}: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{key}: {module_name!r} has no function {name!r}")
    return fn


class CustomFunction:
    """A user's function named in the config as `module:function` (`env.termination` or `env.reward`), as rollouts
    and diagnostics call it: every result is checked against what the check at start tried (a tensor of shape `N`
    on the inputs' device, of the right dtype) and a result that breaks it is a CustomFunctionError naming the
    function and what it returned. These checks read a tensor's metadata only: no device synchronization."""

    key = ""
    """The config key that names it: env.termination or env.reward."""
    dtype_name = ""
    """The dtype the function must return, in words."""

    def __init__(self, fn: Callable[..., torch.Tensor], ref: str) -> None:
        self.fn = fn
        """The user's function itself."""
        self.ref = ref
        """`module:function`, as the config names it."""

    def dtype_ok(self, out: torch.Tensor) -> bool:
        """Whether `out` has the dtype the function must return."""
        raise NotImplementedError

    def checked(self, out: object, like: torch.Tensor) -> torch.Tensor:
        """`out`, the function's result on inputs of `like`'s rows and device, or a CustomFunctionError."""
        n = like.shape[0]
        if (isinstance(out, torch.Tensor) and out.shape == (n,) and out.device == like.device
                and self.dtype_ok(out)):
            return out
        got = (f"a {out.dtype} tensor of shape {tuple(out.shape)} on {out.device}" if isinstance(out, torch.Tensor)
               else f"a {type(out).__name__}")
        raise CustomFunctionError(f"{self.key}: {self.ref} returned {got} instead of a {self.dtype_name} tensor of "
                                  f"shape ({n},) on {like.device} (it passed the check at start)")


class CustomTermination(CustomFunction):
    """A custom termination function: next observations `N x D` -> bool `N`, each result checked."""

    key = "env.termination"
    dtype_name = "bool"

    def dtype_ok(self, out: torch.Tensor) -> bool:
        return out.dtype == torch.bool

    def __call__(self, next_obs: torch.Tensor) -> torch.Tensor:
        return self.checked(self.fn(next_obs), next_obs)


class CustomReward(CustomFunction):
    """A custom reward function: `(obs N x D, act N x A, next_obs N x D)` -> floats `N`, each result checked.

    Finiteness is checked in batches, to read the device once per rollout rather than once per call: each call
    adds up, on the device, its NaN and infinite rewards for rows whose inputs are all finite (a non-finite input
    comes from the model, whose own check names it), and `check_finite` reads the sums.
    """

    key = "env.reward"
    dtype_name = "floating-point"

    def __init__(self, fn: Callable[..., torch.Tensor], ref: str) -> None:
        super().__init__(fn, ref)
        self.nonfinite: torch.Tensor | None = None
        """`2`: NaN and infinite rewards for finite inputs since the last `check_finite` (None: no call since)."""

    def dtype_ok(self, out: torch.Tensor) -> bool:
        return out.is_floating_point()

    def __call__(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        reward = self.checked(self.fn(obs, act, next_obs), obs)
        inputs_finite = torch.isfinite(obs).all(dim=-1) & torch.isfinite(act).all(dim=-1) & torch.isfinite(
            next_obs).all(dim=-1)
        counts = torch.stack([(torch.isnan(reward) & inputs_finite).sum(), (torch.isinf(reward) & inputs_finite).sum()])
        self.nonfinite = counts if self.nonfinite is None else self.nonfinite + counts
        return reward

    def check_finite(self) -> None:
        """A CustomFunctionError if a reward since the last check was NaN or infinite for finite inputs (one read of
        the device); the counts start again."""
        if self.nonfinite is None:
            return
        nan, inf = self.nonfinite.tolist()
        self.nonfinite = None
        if nan or inf:
            raise CustomFunctionError(f"{self.key}: {self.ref} returned non-finite rewards ({nan:,} NaN, {inf:,} "
                                      "infinite) for finite observations and actions (it passed the check at start)")


def reward_of(config: Config) -> CustomReward | None:
    """The custom reward function of `config.env.reward`, or None when rewards come from the model."""
    if config.env.reward == "model":
        return None
    return CustomReward(import_function(config.env.reward, "env.reward"), config.env.reward)
