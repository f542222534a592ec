"""A run's task as the engine meets it: the environment checked against the agent, the custom termination and
reward functions tried on real transitions, and the facts the defaults of `--env ENV_ID` depend on.

Everything here runs before a run is registered, so a mismatch (a continuous-only agent on a Discrete task,
a custom function that cannot be imported or returns the wrong shape) is a one-line ConfigError at start,
never a crash mid-run. The termination itself (known, never, learned or custom) is `mbpo_cli.models.termination`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mbpo_cli.agents.base import ActionSpace
from mbpo_cli.agents.factory import action_space_of, agents_for
from mbpo_cli.config.load import ConfigError, TaskFacts
from mbpo_cli.config.schema import Config, EnvConfig
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env, random_action, to_env_action
from mbpo_cli.models.termination import TerminationKind, termination_of
from mbpo_cli.models.termination.custom import CustomTermination, reward_of
from mbpo_cli.models.termination.known import known_task

PROBE_STEPS = 2000
"""Random-action steps taken to learn whether a task without a known termination function terminates."""
CHECK_STATES = 8
"""Observations a custom function is tried on at start."""


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
    if termination.kind != TerminationKind.CUSTOM and reward is None:
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
