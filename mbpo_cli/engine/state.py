"""A run's complete state and how a fresh one is built from its config and seed.

`build_run(config)` creates every component from `config.train.seed`; the resulting `RunState` is plain
data the checkpoint module can save and restore exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from mbpo_cli.agents.sac import SAC
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env
from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer
from mbpo_cli.models.termination import TerminationFn, termination_fn

PHASES = ("env", "model", "rollout", "sac", "eval")
INITIAL_STATE_POOL = 10_000


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else CPU; `cuda` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available here")
    return device


@dataclass
class EpochAccumulator:
    """Sums over the current epoch, kept on the device until the epoch ends."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    updates: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    episode_returns: list[float] = field(default_factory=list)

    def add(self, key: str, value: torch.Tensor) -> None:
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()


@dataclass
class RunState:
    """Everything a run needs to continue: components, RNGs, counters and partial metrics."""

    config: Config
    device: torch.device
    spec: EnvSpec
    env: gym.Env
    eval_env: gym.Env
    agent: SAC
    model: GaussianEnsemble | None
    model_optimizer: torch.optim.Optimizer | None
    real_buffer: ReplayBuffer
    model_buffer: ReplayBuffer | None
    generators: dict[str, torch.Generator]
    rng: np.random.Generator
    terminated: TerminationFn
    obs: np.ndarray
    episode_return: float = 0.0
    episode_length: int = 0
    env_step: int = 0
    sac_updates: int = 0
    k: int = 1
    model_info: dict[str, float] = field(default_factory=dict)
    epoch_acc: EpochAccumulator = field(default_factory=EpochAccumulator)
    initial_states: torch.Tensor | None = None
    update_mode: str | None = None
    """How SAC updates and model training steps run in this process (CUDA graphs or eager); decided once
    exploration is over."""

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return self.env_step // self.config.train.epoch_length

    @property
    def uses_model(self) -> bool:
        """True for MBPO, False for the SAC-only baseline."""
        return self.model is not None


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch's global RNGs (used for network initialization only)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_run(config: Config, device: torch.device | None = None) -> RunState:
    """All components of a fresh run, determined by `config.train.seed`."""
    device = device or resolve_device(config.train.device)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    seed = config.train.seed
    seed_everything(seed)
    env, eval_env = make_env(config.env), make_env(config.env)
    spec = env_spec(env)
    obs, _ = env.reset(seed=seed)
    eval_env.reset(seed=seed + 1)

    agent = SAC(spec.obs_dim, spec.act_dim, config.sac).to(device)
    model = optimizer = model_buffer = None
    if config.algo == "mbpo":
        model = GaussianEnsemble(spec.obs_dim, spec.act_dim, config.model).to(device)
        optimizer = make_model_optimizer(model)
        model_buffer = ReplayBuffer(1, spec.obs_dim, spec.act_dim, device)
    generators = {}
    for offset, name in enumerate(("sample", "act", "model", "rollout")):
        generators[name] = torch.Generator(device=device)
        generators[name].manual_seed(seed * 1000 + offset + 1)
    state = RunState(
        config=config,
        device=device,
        spec=spec,
        env=env,
        eval_env=eval_env,
        agent=agent,
        model=model,
        model_optimizer=optimizer,
        real_buffer=ReplayBuffer(min(config.sac.buffer_size, config.train.steps), spec.obs_dim, spec.act_dim, device),
        model_buffer=model_buffer,
        generators=generators,
        rng=np.random.default_rng(seed),
        terminated=termination_fn(config.env.termination, config.env.id),
        obs=np.asarray(obs, dtype=np.float32),
    )
    if model is not None and config.rollout.from_initial_states:
        state.initial_states = initial_state_pool(config, device)
    return state


def initial_state_pool(config: Config, device: torch.device) -> torch.Tensor:
    """Observations of environment resets `P x D`, for rollouts branched from the initial states."""
    env = make_env(config.env)
    pool = [env.reset(seed=config.train.seed + 10_000 + i)[0] for i in range(INITIAL_STATE_POOL)]
    env.close()
    return torch.as_tensor(np.stack(pool), dtype=torch.float32, device=device)
