"""A run's task as the engine meets it: the environment checked against the agent, and the termination and
reward functions that model rollouts use (known, learned, custom `module:function`, or none).

Everything here runs before a run is registered, so a mismatch (a continuous-only agent on a Discrete task,
a custom function that cannot be imported or returns the wrong shape) is a one-line ConfigError at start,
never a crash mid-run. A custom function that passes that check and misbehaves later is caught at the call that
misbehaves (`CustomTermination`, `CustomReward`): a CustomFunctionError naming it, never a crash elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mbpo_cli.agents.base import ActionSpace
from mbpo_cli.agents.factory import action_space_of, agents_for
from mbpo_cli.config.load import ConfigError, TaskFacts
from mbpo_cli.config.schema import Config, EnvConfig
from mbpo_cli.engine.envs import (
    EnvSpec,
    env_spec,
    make_env,
    random_action,
    to_env_action,
    working_directory_importable,
)
from mbpo_cli.engine.errors import CustomFunctionError
from mbpo_cli.models.termination import TERMINATION_FNS, TerminationFn, known_task, termination_name

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""`(obs N x D, act N x A, next_obs N x D) -> reward N`."""

PROBE_STEPS = 2000
"""Random-action steps taken to learn whether a task without a known termination function terminates."""
CHECK_STATES = 8
"""Observations a custom function is tried on at start."""


@dataclass(frozen=True)
class Termination:
    """How rollouts decide termination: `kind` known, never, learned or custom; `fn` for all but learned."""

    kind: str
    fn: TerminationFn | None
    description: str


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


def termination_of(config: Config) -> Termination:
    """The termination rollouts use for `config.env.termination` (ConfigError when it names nothing usable)."""
    setting, env_id = config.env.termination, config.env.id
    if setting == "learned":
        return Termination("learned", None, "learned (a classifier trained with the model)")
    if ":" in setting:
        fn = CustomTermination(import_function(setting, "env.termination"), setting)
        return Termination("custom", fn, f"custom ({setting})")
    name = termination_name(setting, env_id)
    if name is None:
        raise ConfigError(f"env.termination: {setting}: {env_id} has no known termination function; "
                          "use learned, never or module:function")
    kind = "never" if name == "never" else "known"
    return Termination(kind, TERMINATION_FNS[name], name if kind == "never" else f"known ({name})")


def reward_of(config: Config) -> CustomReward | None:
    """The custom reward function of `config.env.reward`, or None when rewards come from the model."""
    if config.env.reward == "model":
        return None
    return CustomReward(import_function(config.env.reward, "env.reward"), config.env.reward)


def check_agent(config: Config, spec: EnvSpec) -> None:
    """ConfigError unless the agent supports the task's action space, naming the fix."""
    space: ActionSpace = "discrete" if spec.discrete else "continuous"
    if config.algo == "dhmbpo":
        if spec.discrete:
            raise ConfigError(f"algo: dhmbpo needs a continuous (Box) action space but {config.env.id} has "
                              f"{spec.action_space}: its actor's gradient flows through the actions")
        return
    name = config.agent.name
    if action_space_of(name) != space:
        fits = ", ".join(agents_for(space))
        raise ConfigError(f"agent.name: {name} needs a {action_space_of(name)} action space but {config.env.id} "
                          f"has {spec.action_space}: use --set agent.name={fits.split(', ')[0]} "
                          f"(fits {spec.action_space}: {fits})")


def _sample_states(config: EnvConfig, spec: EnvSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real `obs`, random `act` and the resulting `next_obs` (`N x ...`), to try custom functions on."""
    env, rng = make_env(config), np.random.default_rng(0)
    observations: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    next_observations: list[np.ndarray] = []
    try:
        obs, _ = env.reset(seed=0)
        while len(actions) < CHECK_STATES:
            act = random_action(spec, rng)
            next_obs, _, terminated, truncated, _ = env.step(to_env_action(act, spec))
            observations.append(np.asarray(obs, np.float32))
            actions.append(act)
            next_observations.append(np.asarray(next_obs, np.float32))
            obs = env.reset()[0] if terminated or truncated else next_obs
    finally:
        env.close()
    return (torch.as_tensor(np.stack(observations)), torch.as_tensor(np.stack(actions)),
            torch.as_tensor(np.stack(next_observations)))


def _call(fn: Callable[..., torch.Tensor], key: str, *args: torch.Tensor) -> torch.Tensor:
    try:
        out = fn(*args)
    except Exception as err:  # the user's function failed on real inputs: say how, in one line
        first = str(err).strip().splitlines()
        raise ConfigError(f"{key}: calling it on {len(args[0])} real transitions failed: {type(err).__name__}"
                          f"{': ' + first[0] if first else ''}") from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{key}: must return a torch tensor, got {type(out).__name__}")
    return out


def check_functions(config: Config, spec: EnvSpec) -> None:
    """Call the custom termination and reward functions on real transitions; ConfigError unless each returns
    a tensor of shape `N` (bool for termination, finite floats for reward)."""
    termination, reward = termination_of(config), reward_of(config)
    if termination.kind != "custom" and reward is None:
        return
    obs, act, next_obs = _sample_states(config.env, spec)
    n = obs.shape[0]
    if isinstance(termination.fn, CustomTermination):
        done = _call(termination.fn.fn, "env.termination", next_obs)
        if done.shape != (n,) or done.dtype != torch.bool:
            raise ConfigError(f"env.termination: {config.env.termination} must map next observations {n} x "
                              f"{spec.obs_dim} to a bool tensor of shape ({n},), got {done.dtype} {tuple(done.shape)}")
    if reward is not None:
        value = _call(reward.fn, "env.reward", obs, act, next_obs)
        if value.shape != (n,) or not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise ConfigError(f"env.reward: {config.env.reward} must map (obs {n} x {spec.obs_dim}, act {n} x "
                              f"{spec.act_dim}, next_obs) to finite floats of shape ({n},), got {value.dtype} "
                              f"{tuple(value.shape)}")


def check_task(config: Config) -> EnvSpec:
    """Everything about the task that can be wrong before training: the environment, the agent's action space,
    the termination and reward functions. Returns the task's spec."""
    env = make_env(config.env)
    spec = env_spec(env)
    env.close()
    check_agent(config, spec)
    check_functions(config, spec)
    return spec


def task_facts(env_id: str) -> tuple[TaskFacts, str]:
    """The facts the defaults of `--env ENV_ID` depend on, and a line saying which termination it gets and why.

    A task with a known function gets it; otherwise random actions are tried for `PROBE_STEPS` steps: if an
    episode terminates, `learned`, else `never`.
    """
    env = make_env(EnvConfig(id=env_id))
    spec = env_spec(env)
    try:
        task = known_task(env_id)
        if task is not None:
            return TaskFacts(spec.obs_dim, spec.act_dim, spec.discrete, "known"), f"env.termination: known ({task})"
        rng = np.random.default_rng(0)
        env.reset(seed=0)
        ended = False
        for _ in range(PROBE_STEPS):
            _, _, terminated, truncated, _ = env.step(to_env_action(random_action(spec, rng), spec))
            if terminated:
                ended = True
                break
            if truncated:
                env.reset()
    finally:
        env.close()
    if ended:
        note = (f"env.termination: learned ({env_id} has no known termination function and its episodes terminate: "
                "a classifier learns it from real transitions)")
        return TaskFacts(spec.obs_dim, spec.act_dim, spec.discrete, "learned"), note
    note = (f"env.termination: never (no known function for {env_id}, and no episode terminated in {PROBE_STEPS:,} "
            "random steps; --set env.termination=learned if the task can end, e.g. at a goal)")
    return TaskFacts(spec.obs_dim, spec.act_dim, spec.discrete, "never"), note
