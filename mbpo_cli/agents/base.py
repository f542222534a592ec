"""The protocol every base agent implements, and the update machinery the agents share.

Actions are float vectors `B x A` everywhere an agent meets the engine: in `[-1, 1]^A` for a continuous
(Box) task, one-hot over the `A` choices for a discrete one, so buffers, the dynamics model and the
rollouts treat both alike.

An update is a pure function of its minibatch, the noise it needs (drawn outside it from the run's
generator) and its *phase* (which parts it steps, e.g. TD3's delayed actor): that is what lets a CUDA graph
replay it exactly, one graph per minibatch shape and phase.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal, Protocol

import torch
from torch import nn

from mbpo_cli.nn.batch import Batch
from mbpo_cli.nn.graphs import CapturedStep, capture_step, set_capturable
from mbpo_cli.nn.optim import learning_rates_kept

UpdateInfo = dict[str, torch.Tensor]
"""Scalar losses and statistics of one update, kept on the device (read once per epoch)."""

ActionSpace = Literal["continuous", "discrete"]


class Agent(Protocol):
    """What the training loop, the rollouts, the checkpoints and evaluation need of a base agent."""

    action_space: ClassVar[ActionSpace]
    """The kind of action space the agent supports."""

    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions `B x A` for observations `B x D`: the greedy/mean action, or the exploring one."""
        ...

    def update(self, batch: Batch, generator: torch.Generator) -> UpdateInfo:
        """One update on a minibatch of `B` transitions; its noise is drawn from `generator`."""
        ...

    def on_env_step(self, env_step: int) -> None:
        """The run's real step count before acting (schedules such as DQN's epsilon follow it)."""
        ...

    def epoch_metrics(self) -> dict[str, float]:
        """The agent's state worth logging at an epoch end (SAC's temperature, DQN's epsilon)."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (their states belong in a checkpoint)."""
        ...

    def load_optimizer_states(self, states: dict[str, dict]) -> None:
        """Load what `optimizers()` saved (any device), keeping the learning rates the optimizers were built with (the
        config's); updates run eagerly until recaptured."""
        ...

    def use_cuda_graph(self, batch: Batch, generator: torch.Generator) -> str:
        """Capture the update for minibatches shaped like `batch` (CUDA only); says how updates will run."""
        ...

    @property
    def policy(self) -> nn.Module:
        """The module that acts (the actor, or DQN's Q network): what a best-policy file holds."""
        ...

    def deterministic_policy(self) -> nn.Module:
        """The greedy or mean policy, standalone (a copy in `nn.Linear` layers, which export formats map and
        quantize): raw observations `B x D` -> actions `B x A` in `[-1, 1]` (continuous), or the greedy action's
        index, int64 `B` (discrete), any input normalization included. It acts as `act(obs, deterministic=True)`."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every network, target and counter a checkpoint holds (nn.Module's)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> object:
        """Restore `state_dict()` (nn.Module's)."""
        ...


class GraphedAgent(nn.Module, ABC):
    """The update loop every agent shares: noise drawn outside, then the update eagerly or as a CUDA graph.

    Subclasses implement `update_with_noise(batch, noise, phase)`, `optimizers()`, `act`, `policy` and
    `deterministic_policy` and,
    where they need them, `noise_shape(batch)` (policy noise drawn per update) and `next_phase()` / `phases()`
    (steps that differ from update to update).
    """

    action_space: ClassVar[ActionSpace] = "continuous"

    def __init__(self) -> None:
        super().__init__()
        self.graphs: dict[tuple[torch.Size, int], CapturedStep[UpdateInfo]] = {}

    def noise_shape(self, batch: Batch) -> tuple[int, ...] | None:
        """The shape of the standard normal noise one update needs (None: no noise)."""
        return None

    def phases(self) -> tuple[int, ...]:
        """Every phase an update can be in."""
        return (0,)

    def next_phase(self) -> int:
        """The phase of the update about to run (advances the agent's update counter where it has one)."""
        return 0

    @abstractmethod
    def update_with_noise(self, batch: Batch, noise: torch.Tensor | None, phase: int) -> UpdateInfo:
        """The update as a pure function of minibatch, noise and phase (capturable)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name."""

    @abstractmethod
    def act(self, obs: torch.Tensor, deterministic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions `B x A` for observations `B x D`."""

    @property
    @abstractmethod
    def policy(self) -> nn.Module:
        """The module that acts."""

    @abstractmethod
    def deterministic_policy(self) -> nn.Module:
        """The greedy or mean policy, standalone (see `Agent.deterministic_policy`)."""

    def _noise(self, batch: Batch, generator: torch.Generator) -> torch.Tensor | None:
        shape = self.noise_shape(batch)
        if shape is None:
            return None
        return torch.randn(shape, generator=generator, device=batch.act.device, dtype=batch.act.dtype)

    def update(self, batch: Batch, generator: torch.Generator) -> UpdateInfo:
        """One update on a minibatch of `B` transitions.

        The noise is drawn from `generator` here; the step itself runs as a captured CUDA graph once
        `use_cuda_graph` has installed one for this minibatch shape and phase, else eagerly. The returned
        tensors are valid until the next update.
        """
        noise = self._noise(batch, generator)
        phase = self.next_phase()
        graph = self.graphs.get((batch.obs.shape, phase))
        if graph is not None:
            return graph(*batch, *([] if noise is None else [noise]))
        return self.update_with_noise(batch, noise, phase)

    def use_cuda_graph(self, batch: Batch, generator: torch.Generator) -> str:
        """Capture the update of every phase for minibatches shaped like `batch` (CUDA only); says how updates run.

        Capture and its check against eager execution leave the agent's state as it was; `generator` draws
        only the check's noise (pass a dedicated one to keep the training streams untouched). Optimizer states
        restored from a checkpoint must be loaded before this call.
        """
        noise = self._noise(batch, generator)
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
        built with (its config's); updates run eagerly until recaptured."""
        self.graphs.clear()
        for name, opt in self.optimizers().items():
            with learning_rates_kept(opt):
                opt.load_state_dict(states[name])
        set_capturable(list(self.optimizers().values()), False)

    def on_env_step(self, env_step: int) -> None:
        """Nothing by default."""

    def epoch_metrics(self) -> dict[str, float]:
        """Nothing by default."""
        return {}


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """`target <- target + tau (source - target)` for every parameter, in one fused call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def frozen_copy(module: nn.Module, like: nn.Module) -> nn.Module:
    """`module` loaded with `like`'s weights and excluded from gradients (a target network)."""
    module.load_state_dict(like.state_dict())
    module.requires_grad_(False)
    return module
