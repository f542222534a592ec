"""A run's complete state and how a fresh one is built from its config and seed.

`build_run(config)` creates every component from `config.train.seed`; the resulting `RunState` says what a
checkpoint holds of it (`checkpoint_state`, each part from the component that owns it) and loads it back exactly.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from mbpo_cli.agents.base import Agent, GraphedAgent, seed_agent
from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.agents.factory import make_agent
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.double_horizon import DoubleHorizon, bind_model
from mbpo_cli.engine.envs import EnvSpec, env_spec, get_env_state, make_env, set_env_state
from mbpo_cli.engine.pipeline import ModelJob, Models
from mbpo_cli.engine.seed_run import SeedRun
from mbpo_cli.engine.task import check_agent
from mbpo_cli.models.dynamics import DynamicsEnsemble
from mbpo_cli.models.dynamics_fit import TransitionLabels
from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer
from mbpo_cli.models.termination import Termination, TerminationKind, termination_of
from mbpo_cli.models.termination.custom import CustomReward, reward_of
from mbpo_cli.models.termination.known import TerminationFn
from mbpo_cli.models.termination.learned import DoneClassifier, make_done_optimizer
from mbpo_cli.nn.optim import SeedAdam

PHASES = ("env", "model", "rollout", "agent", "eval", "diag")
MODEL_PHASES = ("model", "rollout", "diag")
"""The phases only a run with a model has (a run without one records no time for them)."""
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
    counts: dict[str, int] = field(default_factory=dict)
    """How many values each sum holds (an agent may report a key on some updates only, as TD3's actor loss)."""
    updates: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def add(self, key: str, value: torch.Tensor) -> None:
        if key in self.sums:
            self.sums[key] += value
            self.counts[key] += 1
        else:
            self.sums[key] = value.clone()
            self.counts[key] = 1

    def checkpoint_state(self, episode_returns: list[float]) -> dict[str, Any]:
        """What a checkpoint holds of the epoch so far (the sums on the CPU), with the seed's finished episodes'
        `episode_returns`."""
        return {
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "counts": dict(self.counts),
            "updates": self.updates,
            "seconds": dict(self.seconds),
            "episode_returns": list(episode_returns),
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], device: torch.device) -> EpochAccumulator:
        """What `checkpoint_state` saved, the sums on `device`; also from an earlier version, which had no counts (a
        sum per update), named the agent's phase `sac` and kept the temperature among the sums."""
        updates = int(saved["updates"])
        sums = {k: v.to(device) for k, v in saved["sums"].items() if k != "alpha"}  # alpha: an epoch-end value now
        return cls(
            sums=sums,
            counts={k: int(saved.get("counts", {}).get(k, updates)) for k in sums},
            updates=updates,
            seconds={**dict.fromkeys(PHASES, 0.0),
                     **{("agent" if k == "sac" else k): v for k, v in saved["seconds"].items()}},
        )


@dataclass
class RunState:
    """Everything a run needs to continue: components, RNGs, counters and partial metrics."""

    config: Config
    device: torch.device
    spec: EnvSpec
    members: list[SeedRun]
    """Each seed's own part, in the pack's seed order (one for a lone run)."""
    agent: Agent
    model: GaussianEnsemble | None
    model_optimizer: SeedAdam | None
    termination: Termination
    reward_fn: CustomReward | None = None
    """A custom reward for model rollouts (None: the model's prediction)."""
    done_model: DoneClassifier | None = None
    """The learned termination classifier (env.termination: learned)."""
    done_optimizer: torch.optim.Optimizer | None = None
    env_step: int = 0
    agent_updates: int = 0
    k: int = 1
    model_trained_at: int | None = None
    """The env step of the last model retrain (the newer real transitions are unseen by the model); None until a
    model has been trained."""
    epoch_acc: EpochAccumulator = field(default_factory=EpochAccumulator)
    model_job: ModelJob | None = None
    """The retrain running in the background since the last due point (`train.pipeline`)."""
    updates_prepared: bool = False
    """Whether this process has decided how updates run (`update_mode`, CUDA graphs captured where they can be):
    once, when exploration is over; a resumed run decides again."""
    update_mode: str = ""
    """How agent updates and model training steps run in this process (CUDA graphs or eager), in words (empty until
    decided)."""
    double_horizon: DoubleHorizon | None = None
    """DHMBPO's dynamics model and the labels of its real data (algo: dhmbpo; its actor-critic is `agent`)."""
    failed: dict[int, str] = field(default_factory=dict)
    """Seeds (places in `members`) whose numbers went non-finite in the current phase, with the message; the loop
    takes them out of the pack after the phase (`mbpo_cli.engine.pack.drop_failed`)."""

    @property
    def lone(self) -> SeedRun:
        """The one seed of a lone run (DHMBPO's burst and the component benchmarks take one seed)."""
        if len(self.members) != 1:
            raise ValueError(f"a run of one seed was expected, this one packs {len(self.members)}")
        return self.members[0]

    @property
    def epoch(self) -> int:
        """Completed epochs of real steps, exploration included (evaluations and checkpoints follow it)."""
        return self.env_step // self.config.train.epoch_length

    @property
    def training_epoch(self) -> int:
        """Completed epochs after random exploration, the official code's epoch (the rollout schedule's)."""
        return max(0, self.env_step - self.config.train.init_steps) // self.config.train.epoch_length

    @property
    def uses_model(self) -> bool:
        """True for MBPO (its ensemble and branched rollouts), False for the base agent alone and for DHMBPO (whose
        model is in `double_horizon`)."""
        return self.model is not None

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases this run spends time in (its `time_*` metrics): all of them for MBPO, no model diagnostics for
        DHMBPO, no model phase for the base agent alone."""
        if self.uses_model:
            return PHASES
        if self.double_horizon is not None:
            return tuple(p for p in PHASES if p != "diag")
        return tuple(p for p in PHASES if p not in MODEL_PHASES)

    def terminated(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Termination `N` (bool) of model next observations `N x D`, by a lone run's termination function."""
        return self.seed_terminated(0)(next_obs)

    def seed_terminated(self, member: int) -> TerminationFn:
        """Seed `member`'s termination function of model next observations `N x D` (its own learned classifier, or the
        task's function)."""
        if self.done_model is not None:
            done = self.done_model if len(self.members) == 1 else self.done_model.seed(member)
            return lambda next_obs: done(next_obs.unsqueeze(0))[0]
        assert self.termination.fn is not None
        return self.termination.fn

    def seed_agent(self, member: int) -> Agent:
        """Seed `member`'s agent as a lone one: the run's own for a lone run, else a copy of that seed's networks."""
        if len(self.members) == 1:
            return self.agent
        assert isinstance(self.agent, GraphedAgent)
        return seed_agent(self.agent, member)

    def seed_model(self, member: int) -> GaussianEnsemble:
        """Seed `member`'s ensemble as a lone one: the run's own for a lone run, else a copy of that seed's."""
        assert self.model is not None
        return self.model if len(self.members) == 1 else self.model.seed(member)

    # -- checkpoints: each part saved and restored by the component that owns it ------------------------------

    def place(self, index: int) -> int:
        """Where in `members` the seed of pack index `index` is now (seeds that failed have left the pack)."""
        for place, seed in enumerate(self.members):
            if seed.index == index:
                return place
        raise ValueError(f"seed {index} of the pack is no longer in it")

    def member_config(self, member: int) -> Config:
        """The config of seed `member`'s run: the pack's, with that seed."""
        seed = self.members[member].seed
        return self.config if seed == self.config.train.seed else replace(
            self.config, train=replace(self.config.train, seed=seed))

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue this lone run bit for bit, as a checkpoint holds it (tensors and plain
        values): the run's own counters, observation, RNGs and environment, and each component's part (the agent's
        networks and optimizers, the buffers, the models, DHMBPO's model, a finished background retrain). A seed of a
        pack saves its lone view's (`mbpo_cli.engine.pack.lone_view`)."""
        seed = self.lone
        saved: dict[str, Any] = {
            "config": self.config.to_dict(),
            "device": str(self.device),
            "counters": self._counters(seed),
            "obs": torch.from_numpy(seed.obs.copy()),
            "agent": self.agent.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.agent.optimizers().items()},
            "real_buffer": seed.real_buffer.checkpoint_state(),
            "model_info": dict(seed.model_info),
            "epoch_acc": self.epoch_acc.checkpoint_state(seed.episode_returns),
            "rng": {"generators": {name: g.get_state() for name, g in seed.generators.items()},
                    **global_rng_state(), "exploration": seed.rng.bit_generator.state},
            "env": _as_tensors(get_env_state(seed.env)),
        }
        if self.model is not None and seed.model_buffer is not None:
            saved.update(self._models().checkpoint_state(), model_buffer=seed.model_buffer.checkpoint_state())
        if seed.initial_states is not None:
            saved["initial_states"] = seed.initial_states.cpu()
        if self.double_horizon is not None:
            saved["double_horizon"] = self.double_horizon.checkpoint_state()
        if self.model_job is not None:
            saved["model_job"] = self.model_job.result().checkpoint_state()
        return saved

    def load_checkpoint_state(self, saved: dict[str, Any]) -> bool:
        """Load what `checkpoint_state` saved (also from an earlier version) into this freshly built run of the same
        config. True when the continuation is exact (the same device type); across device types the torch generators
        cannot be restored and are reseeded from the seed and env step."""
        seed = self.lone
        self._load_counters(seed, saved["counters"], model_trained=bool(saved["model_info"]))
        seed.obs = saved["obs"].numpy().copy()
        self.agent.load_state_dict(saved["agent"])
        self.agent.load_optimizer_states(saved["optimizers"])
        seed.real_buffer = ReplayBuffer.from_checkpoint(saved["real_buffer"], self.spec.obs_dim, self.spec.act_dim,
                                                        self.device, seed.real_buffer.capacity)
        if self.model is not None:
            self._models().load_checkpoint_state(saved)
            seed.model_buffer = ReplayBuffer.from_checkpoint(saved["model_buffer"], self.spec.obs_dim,
                                                             self.spec.act_dim, self.device)
        if "initial_states" in saved:
            seed.initial_states = saved["initial_states"].to(self.device)
        if self.double_horizon is not None:
            self.double_horizon.load_checkpoint_state(saved["double_horizon"])
        job = saved.get("model_job")
        self.model_job = None if job is None else ModelJob.from_checkpoint(job, self._models(), self.device)
        seed.model_info = dict(saved["model_info"])
        self.epoch_acc = EpochAccumulator.from_checkpoint(saved["epoch_acc"], self.device)
        seed.episode_returns = list(saved["epoch_acc"]["episode_returns"])
        exact = torch.device(saved["device"]).type == self.device.type
        self._load_rngs(seed, saved["rng"], exact)
        set_env_state(seed.env, {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in saved["env"].items()})
        return exact

    def _models(self) -> Models:
        """The ensemble and the learned termination with their optimizers, as a retrain trains them."""
        assert self.model is not None and self.model_optimizer is not None
        return Models(self.model, self.model_optimizer, self.done_model, self.done_optimizer)

    def _counters(self, seed: SeedRun) -> dict[str, Any]:
        return {
            "env_step": self.env_step,
            "agent_updates": self.agent_updates,
            "k": self.k,
            "model_trained_at": self.model_trained_at,
            "model_generations": list(seed.model_generations),
            "episode_return": seed.episode_return,
            "episode_length": seed.episode_length,
        }

    def _load_counters(self, seed: SeedRun, saved: dict[str, Any], model_trained: bool) -> None:
        """The counters `_counters` saved; an earlier version's named the agent's updates after SAC, had no retrain
        step or rollout generations, and saved 0 as the retrain step of a run whose model was not trained yet
        (`model_trained`: whether the checkpoint holds a retrain's metrics)."""
        self.env_step = int(saved["env_step"])
        self.agent_updates = int(saved.get("agent_updates", saved.get("sac_updates", 0)))
        self.k = int(saved["k"])
        trained_at = saved.get("model_trained_at", self.env_step)
        self.model_trained_at = None if trained_at is None or not model_trained else int(trained_at)
        seed.model_generations = [int(n) for n in saved.get("model_generations", [])]
        seed.episode_return = float(saved["episode_return"])
        seed.episode_length = int(saved["episode_length"])

    def _load_rngs(self, seed: SeedRun, saved: dict[str, Any], exact: bool) -> None:
        """The generators, the global RNGs and the exploration RNG; across device types (not `exact`) each generator
        is reseeded from the seed, the env step and its position."""
        for offset, (name, generator) in enumerate(seed.generators.items()):
            if exact and name in saved["generators"]:
                generator.set_state(saved["generators"][name])
            elif exact:
                continue  # a generator newer than the checkpoint, unused by its run: it keeps its seeded state
            else:
                generator.manual_seed(seed.seed * 1000 + 7 * self.env_step + offset)
        set_global_rng_state(saved, cuda=exact and self.device.type == "cuda")
        seed.rng.bit_generator.state = saved["exploration"]


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch's global RNGs (used for network initialization only)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def global_rng_state() -> dict[str, Any]:
    """The global RNGs' states as a checkpoint holds them: torch's, CUDA's (when present), numpy's, Python's."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_global": _as_tensors(list(np.random.get_state())),
        "python": random.getstate(),
    }


def set_global_rng_state(saved: dict[str, Any], cuda: bool) -> None:
    """Restore what `global_rng_state` saved (CUDA's only when `cuda`: a run continuing on the same device type)."""
    torch.set_rng_state(saved["torch"])
    if cuda and saved["cuda"]:
        torch.cuda.set_rng_state_all(saved["cuda"])
    kind, keys, pos, has_gauss, cached = saved["numpy_global"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    random.setstate(_as_tuples(saved["python"]))


def _as_tensors(value: Any) -> Any:
    """numpy arrays -> tensors, recursively (a checkpoint loads with `weights_only`, which takes tensors, not
    arrays)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _as_tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_as_tensors(v) for v in value)
    return value


def _as_tuples(value: Any) -> Any:
    """Lists -> tuples, recursively (Python's RNG state comes back from a checkpoint with lists)."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


GENERATORS = ("sample", "act", "model", "rollout", "done")
"""The run's torch generators: minibatches and update noise, acting, model training, rollouts, the learned
termination's training. Each is seeded from the run's seed and its position here."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(config: Config) -> None:
    """torch's CPU threads: `train.threads` (None: torch's default, all cores); a pipelined MBPO run gives each of
    its two activities (agent updates, model training) half of them."""
    threads = config.train.threads
    if config.train.pipeline and config.algo == "mbpo":
        threads = max(1, (threads or available_cores()) // 2)
    if threads is not None:
        torch.set_num_threads(threads)


def build_run(config: Config, device: torch.device | None = None) -> RunState:
    """All components of a fresh run, determined by `config.train.seed`."""
    device = device or resolve_device(config.train.device)
    set_threads(config)
    torch.set_float32_matmul_precision("medium" if config.train.precision == "bf16" else "highest")
    termination, reward_fn = termination_of(config), reward_of(config)
    seed = config.train.seed
    seed_everything(seed)
    env, eval_env = make_env(config.env), make_env(config.env)
    spec = env_spec(env)
    check_agent(config, spec)
    obs, _ = env.reset(seed=seed)
    eval_env.reset(seed=seed + 1)

    agent = make_agent(config, spec.obs_dim, spec.act_dim).to(device)
    model = optimizer = model_buffer = done_model = done_optimizer = None
    if config.algo == "mbpo":
        model = GaussianEnsemble(spec.obs_dim, spec.act_dim, config.model).to(device)
        optimizer = make_model_optimizer(model)
        model_buffer = ReplayBuffer(1, spec.obs_dim, spec.act_dim, device)
        if termination.kind == TerminationKind.LEARNED:
            done_model = DoneClassifier(spec.obs_dim, config.done_model).to(device)
            done_optimizer = make_done_optimizer(done_model)
    generators = {}
    for offset, name in enumerate(GENERATORS):
        generators[name] = torch.Generator(device=device)
        generators[name].manual_seed(seed * 1000 + offset + 1)
    buffer_size = min(config.agent.buffer_size, config.train.steps)
    member = SeedRun(
        seed=seed,
        env=env,
        eval_env=eval_env,
        obs=np.asarray(obs, dtype=np.float32),
        rng=np.random.default_rng(seed),
        generators=generators,
        real_buffer=ReplayBuffer(buffer_size, spec.obs_dim, spec.act_dim, device),
        model_buffer=model_buffer,
    )
    state = RunState(
        config=config,
        device=device,
        spec=spec,
        members=[member],
        agent=agent,
        model=model,
        model_optimizer=optimizer,
        termination=termination,
        reward_fn=reward_fn,
        done_model=done_model,
        done_optimizer=done_optimizer,
    )
    if model is not None and config.rollout.from_initial_states:
        member.initial_states = initial_state_pool(config, device)
    if isinstance(agent, DHMBPOAgent):
        state.double_horizon = double_horizon(config, spec, agent, termination, device)
    return state


def double_horizon(config: Config, spec: EnvSpec, agent: DHMBPOAgent, termination: Termination,
                   device: torch.device) -> DoubleHorizon:
    """A DHMBPO run's fresh dynamics model, bound to the agent's training rollouts, and its (empty) labels."""
    assert termination.fn is not None
    model = DynamicsEnsemble(spec.obs_dim, spec.act_dim, config.dhmbpo.model).to(device)
    bind_model(agent, model, termination.fn)
    return DoubleHorizon(model, TransitionLabels.empty(model.members, device))


def initial_state_pool(config: Config, device: torch.device) -> torch.Tensor:
    """Observations of environment resets `P x D`, for rollouts branched from the initial states."""
    env = make_env(config.env)
    pool = [env.reset(seed=config.train.seed + 10_000 + i)[0] for i in range(INITIAL_STATE_POOL)]
    env.close()
    return torch.as_tensor(np.stack(pool), dtype=torch.float32, device=device)
