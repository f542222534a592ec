"""A run's policy in Python: loaded from one of its checkpoints as `mbpo eval` loads it (verified, on the CPU), acting
as `mbpo eval` acts, in the task's own action space."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbpo_cli.agents.base import lone_act
from mbpo_cli.api.records import PathArg, opened_registry
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.env_wrappers import unflattened_space
from mbpo_cli.engine.envs import EnvSpec, make_env, to_env_action
from mbpo_cli.runs import policy as run_policy
from mbpo_cli.runs.layout import RUN_ID
from mbpo_cli.runs.python_envs import EnvObject, register_for_run
from mbpo_cli.runs.registry import RunInfo

POLICY_DEVICE = torch.device("cpu")
"""Where a loaded policy acts: `mbpo_cli.runs.policy.load_policy` loads it on the CPU, as `mbpo eval` does."""

CHECKPOINT_NAMES = ("latest", "best")
"""The checkpoints named by a word; any other is named by its env step."""


class Policy:
    """A run's policy from one checkpoint, acting in the task's action space: a Box task's actions rescaled from the
    agent's ``[-1, 1]`` to the task's bounds, a Discrete task's the chosen action's index.

    :meth:`predict` acts as `mbpo eval` does (the same network on the CPU, the mean or greedy action by default), so
    episodes reset with the same seeds give the same returns as `mbpo eval` on the same checkpoint.
    """

    def __init__(self, loaded: run_policy.Policy, run: RunInfo, seed: int) -> None:
        self._loaded = loaded
        self.run_id = run.id
        self.run_name = run.name
        self.checkpoint = str(loaded.label)
        """The checkpoint, as an evaluation records it: ``<kind>:<env step>`` (``best:300``, ``final:1000``)."""
        self.step = loaded.checkpoint.step
        """The run's env step at the checkpoint."""
        self.config: Config = loaded.config
        """The run's config as the checkpoint holds it."""
        self.spec: EnvSpec = loaded.spec
        """The task's dimensions and action bounds."""
        self._generator = torch.Generator(device=POLICY_DEVICE).manual_seed(seed)
        """The generator stochastic actions draw from."""
        self._raw: gym.Space[Any] | None = None
        """The task's observation space before the flattening, once read (a flattened task only)."""

    def __repr__(self) -> str:
        return f"Policy(run={self.run_id!r}, checkpoint={self.checkpoint!r}, action_space={self.spec.action_space})"

    def observation(self, obs: Any) -> np.ndarray:
        """`obs` (one observation or a batch) as the run's networks take it: float32, each observation flat.

        The one place an observation is prepared for the policy. A run whose task's observation is a Dict or a Tuple
        was trained on it flattened (gymnasium's `FlattenObservation`, said when it started): such an observation
        (a dict or tuple, as the task itself returns it), or a list of them, is flattened here the same way; an
        observation that is already flat (from :meth:`make_env`, which flattens as the run did) is taken as it is.
        """
        if self.spec.flattened and isinstance(obs, dict | tuple):
            return np.asarray(gym.spaces.flatten(self._raw_space(), obs), dtype=np.float32)
        if self.spec.flattened and isinstance(obs, list) and obs and isinstance(obs[0], dict | tuple):
            space = self._raw_space()
            return np.stack([np.asarray(gym.spaces.flatten(space, one), dtype=np.float32) for one in obs])
        return np.asarray(obs, dtype=np.float32)

    def _raw_space(self) -> gym.Space[Any]:
        """The task's observation space before the flattening (a Dict or Tuple), read once from a new environment."""
        if self._raw is None:
            env = make_env(self.config.env)
            try:
                self._raw = unflattened_space(env)
            finally:
                env.close()
        return self._raw

    def predict(self, obs: Any, deterministic: bool = True) -> Any:
        """The action for one observation (`D`), or the actions for a batch (`N x D`), in the task's action space.

        A Box task's action is a float32 array `A` within the task's bounds (a batch: `N x A`); a Discrete task's an
        int (a batch: an int array `N`). `deterministic` takes the mean (SAC) or greedy (DQN) action, as `mbpo eval`
        does; otherwise actions are sampled from a generator seeded by `load_policy(seed=...)`.
        """
        x = self.observation(obs)
        dim = self.spec.obs_dim
        single = x.shape == (dim,)
        if not single and not (x.ndim == 2 and x.shape[1] == dim and x.shape[0] > 0):
            raise ValueError(f"predict: expected one observation of shape ({dim},) or a batch of shape (N, {dim}), "
                             f"got shape {x.shape}")
        batch = torch.as_tensor(x[None] if single else x, device=POLICY_DEVICE)
        generator = None if deterministic else self._generator
        with torch.no_grad():
            actions = lone_act(self._loaded.agent, batch, deterministic, generator).cpu().numpy()
        if single:
            return to_env_action(actions[0], self.spec)
        return np.stack([np.asarray(to_env_action(action, self.spec)) for action in actions])

    def make_env(self) -> gym.Env:
        """A new environment of the run's task, made as the run made it (its id and `env.kwargs`), to act in."""
        return make_env(self.config.env)


def run_reference(run: PathArg, runs_dir: Path) -> tuple[str, Path]:
    """The run `run` names and the runs directory that holds it: a run folder (`runs/3f9a1c2e`: a path, or a string
    naming an existing run folder) is its run in the folder above it; any other string is a run id, id prefix or
    name in `runs_dir`."""
    path = Path(run)
    is_folder = RUN_ID.fullmatch(path.name) is not None and path.is_dir()
    if isinstance(run, str) and not is_folder:
        return run, runs_dir
    if not is_folder:
        raise ValueError(f"{path}: not a run folder (the folder named by a run's id in its runs directory)")
    return path.name, path.parent


def checkpoint_choice(checkpoint: str | int) -> str:
    """`checkpoint` as the runs layer names it: ``latest``, ``best`` or an env step (a ValueError otherwise)."""
    if isinstance(checkpoint, int) and not isinstance(checkpoint, bool) and checkpoint >= 0:
        return str(checkpoint)
    if isinstance(checkpoint, str) and (checkpoint in CHECKPOINT_NAMES or checkpoint.isdigit()):
        return checkpoint
    raise ValueError(f"checkpoint=: expected 'latest', 'best' or an env step, got {checkpoint!r}")


def load_policy(run: PathArg, runs_dir: PathArg = "runs", checkpoint: str | int = "latest", *,
                env: EnvObject | None = None, seed: int = 0) -> Policy:
    """The policy of `run` (a run id, id prefix or name in `runs_dir`, or a run folder) at `checkpoint`: ``latest``
    (the newest full checkpoint, as `mbpo eval`'s default), ``best`` (the best evaluation's policy) or an env step.

    The checkpoint is verified against the registry's checksum. A run whose environment a Python factory or instance
    made needs `env`, the same object, in a process other than the one that trained it (the config cannot rebuild
    it). `seed` seeds the sampling of `predict(..., deterministic=False)`.
    """
    ref, folder = run_reference(run, Path(runs_dir))
    which = checkpoint_choice(checkpoint)
    with opened_registry(folder, read_only=True, missing=f"no run {os.fspath(run)!r}: ") as registry:
        info = registry.get_run(ref)
        if env is not None:
            register_for_run(env, info.env_id, info.id)
        loaded = run_policy.load_policy(registry, info, folder, which)
    return Policy(loaded, info, seed)
