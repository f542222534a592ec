"""The protocol every base agent implements, and the update machinery the agents share.

An agent holds a *pack* of S seeds in one set of tensors, seed-major along dim 0 (`mbpo_cli.nn.seeds`); a lone
run is a pack of one. Actions are float vectors `S x B x A` everywhere an agent meets the engine: in `[-1, 1]^A`
for a continuous (Box) task, one-hot over the `A` choices for a discrete one, so buffers, the dynamics model and
the rollouts treat both alike.

An update is a pure function of its minibatch, the noise it needs (drawn outside it, seed `s`'s from seed `s`'s
generator in the shape a lone run draws) and its *phase* (which parts it steps, e.g. TD3's delayed actor, shared
by every seed): that is what lets a CUDA graph replay it exactly, one graph per minibatch shape and phase. The
pack's loss is the sum of its seeds' losses, so that each seed's gradients are its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast

import torch
from torch import nn

from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.graphs import CapturedStep, capture_step, set_capturable
from mbpo_cli.nn.optim import learning_rates_kept
from mbpo_cli.nn.seeds import SeedAxisError, seed_optimizer_state, seed_state, stack_optimizer_states, stack_states

UpdateInfo = dict[str, torch.Tensor]
"""Per-seed losses and statistics of one update, each of shape `S`, kept on the device (read once per epoch)."""

Generators = Sequence[torch.Generator]
"""One random generator per seed of a pack, in seed order."""

ActionSpace = Literal["continuous", "discrete"]


class Agent(Protocol):
    """What the training loop, the rollouts, the checkpoints and evaluation need of a base agent."""

    action_space: ClassVar[ActionSpace]
    """The kind of action space the agent supports."""

    seeds: int
    """S, the seeds of the pack (1: a lone run)."""

    def act(self, obs: torch.Tensor, deterministic: bool, generators: Generators | None = None) -> torch.Tensor:
        """Actions `S x B x A` for observations `S x B x D`: the greedy/mean action, or the exploring one (seed `s`'s
        noise from `generators[s]`)."""
        ...

    def update(self, batch: Batch, generators: Generators) -> UpdateInfo:
        """One update on a minibatch of `S x B` transitions; seed `s`'s noise is drawn from `generators[s]`."""
        ...

    def on_env_step(self, env_step: int) -> None:
        """The pack's real step count before acting, the same for every seed (schedules such as DQN's epsilon)."""
        ...

    def epoch_metrics(self) -> list[dict[str, float]]:
        """The agent's state worth logging at an epoch end, one dict per seed (SAC's temperature, DQN's epsilon)."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (their states belong in a checkpoint)."""
        ...

    def load_optimizer_states(self, states: dict[str, dict]) -> None:
        """Load what `optimizers()` saved (any device), keeping the learning rates the optimizers were built with (the
        config's); updates run eagerly until recaptured."""
        ...

    def use_cuda_graph(self, batch: Batch, generators: Generators) -> str:
        """Capture the update for minibatches shaped like `batch` (CUDA only); says how updates will run."""
        ...

    @property
    def policy(self) -> nn.Module:
        """The module that acts (the actor, or DQN's Q network) of a lone agent: what a best-policy file holds."""
        ...

    def deterministic_policy(self) -> nn.Module:
        """The greedy or mean policy of a lone agent, standalone (a copy in `nn.Linear` layers, which export formats
        map and quantize): raw observations `B x D` -> actions `B x A` in `[-1, 1]` (continuous), or the greedy
        action's index, int64 `B` (discrete), any input normalization included. It acts as
        `act(obs[None], deterministic=True)[0]`."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every network, target and counter a checkpoint holds (nn.Module's)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> object:
        """Restore `state_dict()` (nn.Module's)."""
        ...


class GraphedAgent(nn.Module, ABC):
    """The update loop every agent shares: noise drawn outside, then the update eagerly or as a CUDA graph.

    Subclasses implement `update_with_noise(batch, noise, phase)`, `optimizers()`, `act`, `policy`,
    `deterministic_policy` and `blank(seeds)` and, where they need them, `noise_shape(batch)` (policy noise drawn
    per update) and `next_phase()` / `phases()` (steps that differ from update to update). `shared_state` names
    the state-dict entries every seed of a pack shares (copied, not stacked).
    """

    action_space: ClassVar[ActionSpace] = "continuous"
    shared_state: ClassVar[frozenset[str]] = frozenset()
    """State-dict keys every seed shares (config constants such as SAC's target entropy)."""

    def __init__(self, seeds: int = 1) -> None:
        super().__init__()
        if seeds < 1:
            raise SeedAxisError(f"a pack needs at least one seed, not {seeds}")
        self.seeds = seeds
        """S, the seeds of the pack (1: a lone run)."""
        self.graphs: dict[tuple[torch.Size, int], CapturedStep[UpdateInfo]] = {}

    @abstractmethod
    def blank(self, seeds: int) -> GraphedAgent:
        """A freshly initialized agent like this one (same dimensions and config) holding `seeds` seeds."""

    def noise_shape(self, batch: Batch) -> tuple[int, ...] | None:
        """The shape of the standard normal noise one seed's update needs (None: no noise); `batch` is `S x B`."""
        return None

    def phases(self) -> tuple[int, ...]:
        """Every phase an update can be in."""
        return (0,)

    def next_phase(self) -> int:
        """The phase of the update about to run (advances the agent's update counter where it has one)."""
        return 0

    @abstractmethod
    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int) -> UpdateInfo:
        """The update as a pure function of minibatch, noise (`S x noise_shape`) and phase (capturable)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name."""

    @abstractmethod
    def act(self, obs: torch.Tensor, deterministic: bool, generators: Generators | None = None) -> torch.Tensor:
        """Actions `S x B x A` for observations `S x B x D`."""

    @property
    @abstractmethod
    def policy(self) -> nn.Module:
        """The module that acts (a lone agent's)."""

    @abstractmethod
    def deterministic_policy(self) -> nn.Module:
        """The greedy or mean policy, standalone (see `Agent.deterministic_policy`)."""

    def lone(self, what: str) -> None:
        """Refuse `what` (a policy, an export) of a pack of several seeds: take a seed out first (`seed_agent`)."""
        if self.seeds != 1:
            raise SeedAxisError(f"{what} is a lone agent's, and this one packs {self.seeds} seeds: "
                                "take one out first (seed_agent)")

    def _check_generators(self, generators: Generators) -> None:
        if len(generators) != self.seeds:
            raise SeedAxisError(f"{len(generators)} generators for a pack of {self.seeds} seeds")

    def _noise(self, batch: Batch, generators: Generators) -> torch.Tensor | None:
        shape = self.noise_shape(batch)
        if shape is None:
            return None
        return seed_normal(shape, generators, self.seeds, batch.act)

    def update(self, batch: Batch, generators: Generators) -> UpdateInfo:
        """One update on a minibatch of `S x B` transitions.

        Seed `s`'s noise is drawn from `generators[s]` here; the step itself runs as a captured CUDA graph once
        `use_cuda_graph` has installed one for this minibatch shape and phase, else eagerly. The returned
        tensors (each `S`, one value per seed) are valid until the next update.
        """
        self._check_generators(generators)
        noise = self._noise(batch, generators)
        phase = self.next_phase()
        graph = self.graphs.get((batch.obs.shape, phase))
        if graph is not None:
            return graph(*batch, *([] if noise is None else [noise]))
        return self.update_with_noise(batch, noise, phase)

    def use_cuda_graph(self, batch: Batch, generators: Generators) -> str:
        """Capture the update of every phase for minibatches shaped like `batch` (CUDA only); says how updates run.

        Capture and its check against eager execution leave the agent's state as it was; `generators` draw
        only the check's noise (pass dedicated ones to keep the training streams untouched). Optimizer states
        restored from a checkpoint must be loaded before this call.
        """
        self._check_generators(generators)
        noise = self._noise(batch, generators)
        modes = []
        for phase in self.phases():
            def step(*tensors: torch.Tensor, phase: int = phase) -> UpdateInfo:
                return self.update_with_noise(Batch(*tensors[:5]), tensors[5] if len(tensors) > 5 else None, phase)

            inputs = [*batch, *([] if noise is None else [noise])]
            graph, mode = capture_step(step, inputs, self, list(self.optimizers().values()))
            if graph is None:
                self.graphs.clear()
                return mode
            self.graphs[(batch.obs.shape, phase)] = graph
            modes.append(mode)
        return modes[0]

    @property
    def graph(self) -> CapturedStep[UpdateInfo] | None:
        """The captured update of the first phase, if any (None: updates run eagerly)."""
        return next(iter(self.graphs.values()), None)

    def load_optimizer_states(self, states: dict[str, dict]) -> None:
        """Load optimizer states saved by `optimizers()` (any device), each optimizer keeping the learning rate it was
        built with (its config's); updates run eagerly until recaptured. A state saved before the seed axis (a
        scalar parameter's moments of shape `()`) takes its parameter's shape."""
        self.graphs.clear()
        for name, opt in self.optimizers().items():
            with learning_rates_kept(opt):
                opt.load_state_dict(_moments_shaped(opt, states[name]))
        set_capturable(list(self.optimizers().values()), False)

    def shared_values(self) -> dict[str, Any]:
        """Python values every seed shares that the state dict does not hold (DQN's epsilon); none by default."""
        return {}

    def load_shared_values(self, values: Mapping[str, Any]) -> None:
        """Restore `shared_values()`."""

    def on_env_step(self, env_step: int) -> None:
        """Nothing by default."""

    def epoch_metrics(self) -> list[dict[str, float]]:
        """Nothing by default (an empty dict per seed)."""
        return [{} for _ in range(self.seeds)]


AgentT = TypeVar("AgentT", bound=GraphedAgent)


def seed_normal(shape: Sequence[int], generators: Generators | None, seeds: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise `S x shape` on `like`'s device and dtype: seed `s`'s drawn from `generators[s]` in
    exactly a lone run's shape (so that a seed in a pack draws the numbers it draws alone); from the default
    generator when `generators` is None."""
    if generators is None:
        return torch.randn((seeds, *shape), device=like.device, dtype=like.dtype)
    return torch.stack([torch.randn(tuple(shape), generator=g, device=like.device, dtype=like.dtype)
                        for g in generators])


def seed_sum(per_seed: torch.Tensor) -> torch.Tensor:
    """The pack's loss: the sum of its seeds' losses (`S` -> scalar), so that each seed's gradients are its own."""
    return per_seed.sum()


def pack_agents(agents: Sequence[AgentT]) -> AgentT:
    """One agent holding the seeds of `agents` in order (lone or packs of the same class and config): networks,
    targets, counters and optimizer states stacked along the seed axis, so that each seed starts as it was."""
    if not agents:
        raise SeedAxisError("a pack needs at least one seed")
    first = agents[0]
    if any(type(a) is not type(first) for a in agents):
        raise SeedAxisError("a pack holds agents of one kind: " + ", ".join(sorted({type(a).__name__ for a in agents})))
    shared = [a.shared_values() for a in agents]
    if any(values != shared[0] for values in shared[1:]):
        raise SeedAxisError("the seeds of a pack share their schedules (" + ", ".join(shared[0]) + ")")
    device = next(first.parameters()).device
    pack = cast(AgentT, first.blank(sum(a.seeds for a in agents)).to(device))
    states = [_per_seed_states(a) for a in agents]
    tensors = stack_states([t for t, _ in states], first.shared_state)
    pack.load_state_dict({**tensors, **_equal_extras([e for _, e in states])})
    pack.load_optimizer_states({name: stack_optimizer_states([a.optimizers()[name].state_dict() for a in agents])
                                for name in first.optimizers()})
    pack.load_shared_values(shared[0])
    return pack


def seed_agent(agent: AgentT, seed: int) -> AgentT:
    """Seed `seed` of the pack `agent` as a lone agent (copies of its networks, targets, counters and optimizer
    states): its checkpoint, its policy."""
    device = next(agent.parameters()).device
    lone = cast(AgentT, agent.blank(1).to(device))
    tensors, extras = _per_seed_states(agent)
    lone.load_state_dict({**seed_state(tensors, seed, agent.seeds, agent.shared_state), **extras})
    lone.load_optimizer_states({name: seed_optimizer_state(opt.state_dict(), seed, agent.seeds)
                                for name, opt in agent.optimizers().items()})
    lone.load_shared_values(agent.shared_values())
    return lone


def _per_seed_states(agent: GraphedAgent) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The agent's state dict split into its tensors and the rest (extra states such as TD3's update counter)."""
    tensors: dict[str, torch.Tensor] = {}
    extras: dict[str, Any] = {}
    for key, value in agent.state_dict().items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            extras[key] = value
    return tensors, extras


def _equal_extras(extras: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if any(e != extras[0] for e in extras[1:]):
        raise SeedAxisError("the seeds of a pack share their counters (" + ", ".join(extras[0]) + ")")
    return dict(extras[0])


def _moments_shaped(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """`state` with each per-parameter tensor of a parameter's size but another shape (a scalar's `()` saved before
    the seed axis) reshaped to the parameter's shape; step counts are left as they are."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    shaped: dict[int, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        param = params[index] if 0 <= index < len(params) else None
        shaped[index] = {name: _reshaped(value, param) if name != "step" else value for name, value in entry.items()}
    return {**state, "state": shaped}


def _reshaped(value: Any, param: torch.Tensor | None) -> Any:
    if (param is not None and isinstance(value, torch.Tensor) and value.shape != param.shape
            and value.numel() == param.numel()):
        return value.reshape(param.shape)
    return value


def scalar_to_seed_axis(state: dict[str, Any], keys: Iterable[str]) -> None:
    """Migrate a state dict saved before the seed axis: each of `keys` held as a scalar becomes shape `(1,)`."""
    for key in keys:
        value = state.get(key)
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            state[key] = value.reshape(1)


def lone_act(agent: Agent, obs: torch.Tensor, deterministic: bool,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Actions `B x A` of a lone agent (a pack of one) for observations `B x D`, its noise from `generator`."""
    return agent.act(obs.unsqueeze(0), deterministic, None if generator is None else [generator])[0]


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """`target <- target + tau (source - target)` for every parameter, in one fused call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def frozen_copy(module: nn.Module, like: nn.Module) -> nn.Module:
    """`module` loaded with `like`'s weights and excluded from gradients (a target network)."""
    module.load_state_dict(like.state_dict())
    module.requires_grad_(False)
    return module
