"""What a pack of seeds needs in memory, estimated before anything is built, and whether it fits.

Each seed of a pack holds its own buffers and networks; what one seed needs at its largest (the model buffer at the
schedule's longest rollouts) times the pack's size is what the pack keeps. The rollouts' and model fits' working
tensors are counted once: a pack branches and fits one seed's data at a time where the sizes differ. The estimate
is of tensors, float32; the process itself (the interpreter, torch, MuJoCo) comes on top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mbpo_cli.agents.factory import make_agent
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.rollout import rollouts_kept
from mbpo_cli.models.dynamics import DynamicsEnsemble
from mbpo_cli.models.ensemble import GaussianEnsemble

FLOAT = 4
"""Bytes of a float32."""


@dataclass(frozen=True)
class SeedMemory:
    """Bytes one seed of a run needs, by part, at its largest."""

    real_buffer: int
    model_buffer: int
    """The model buffer (MBPO: the retained rollouts at the longest branches; DHMBPO: the distribution states)."""
    networks: int
    """Agent and model: parameters, targets, gradients and optimizer moments."""
    working: int
    """The largest transient tensors (a rollout generation through every ensemble member, or the model fit's data),
    needed once per pack."""

    @property
    def kept(self) -> int:
        """What the seed keeps for the whole run (everything but the working tensors)."""
        return self.real_buffer + self.model_buffer + self.networks

    def pack(self, seeds: int) -> int:
        """Bytes a pack of `seeds` needs."""
        return seeds * self.kept + self.working


def transition_bytes(obs_dim: int, act_dim: int) -> int:
    """Bytes of one stored transition: obs, action, reward, next obs, done."""
    return (2 * obs_dim + act_dim + 2) * FLOAT


def network_bytes(modules: list[nn.Module]) -> int:
    """State tensors (parameters, targets, buffers) plus a gradient and Adam's two moments per trainable parameter."""
    state = sum(t.numel() for m in modules for t in m.state_dict().values())
    trainable = sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)
    return (state + 3 * trainable) * FLOAT


def model_buffer_rows(config: Config) -> int:
    """Transitions MBPO's model buffer holds at its largest: every retained generation at the longest branch."""
    rollout = config.rollout
    longest = rollout.adaptive_max_length if rollout.adaptive else max(rollout.schedule[2], rollout.schedule[3])
    return rollouts_kept(config.train.epoch_length, rollout.train_freq, rollout.retain_epochs) * rollout.batch_size \
        * longest


def seed_memory(config: Config, obs_dim: int, act_dim: int) -> SeedMemory:
    """The estimate for one seed of `config` on a task of `obs_dim` observations and `act_dim` actions (networks
    sized by building them on the meta device: no memory, no random numbers)."""
    row = transition_bytes(obs_dim, act_dim)
    real = min(config.agent.buffer_size, config.train.steps) * row
    with torch.device("meta"):
        modules: list[nn.Module] = [make_agent(config, obs_dim, act_dim)]
        if config.algo == "mbpo":
            modules.append(GaussianEnsemble(obs_dim, act_dim, config.model))
        elif config.algo == "dhmbpo":
            modules.append(DynamicsEnsemble(obs_dim, act_dim, config.dhmbpo.model))
    networks = network_bytes(modules)
    model = working = 0
    if config.algo == "mbpo":
        model = model_buffer_rows(config) * row
        members, hidden = config.model.ensemble_size, config.model.hidden
        # a generation through every member: two hidden layers' activations and the Gaussian heads
        working = max(config.rollout.batch_size * members * (2 * hidden + 2 * (obs_dim + 1)) * FLOAT, 2 * real)
    elif config.algo == "dhmbpo":
        model = config.dhmbpo.distribution_buffer * obs_dim * FLOAT
        working = 2 * real
    return SeedMemory(real, model, networks, working)


def largest_pack(memory: SeedMemory, available: int) -> int:
    """The most seeds whose pack fits in `available` bytes (0: not even one)."""
    if memory.working + memory.kept > available:
        return 0
    return (available - memory.working) // max(memory.kept, 1)


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors on `device` now: CUDA's free memory, or the host's available memory (Linux's
    MemAvailable; elsewhere the free physical pages)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class PackTooLarge(ValueError):
    """A pack whose estimate exceeds the device's free memory (the message gives both and the largest pack that
    fits)."""


def check_pack_fits(memory: SeedMemory, seeds: int, device: torch.device, available: int | None = None) -> None:
    """PackTooLarge when `seeds` seeds would not fit on `device` (`available`: the free bytes, measured when None)."""
    free = available_memory(device) if available is None else available
    need = memory.pack(seeds)
    if need > free:
        fits = largest_pack(memory, free)
        advice = f"at most {fits} seeds fit" if fits else "not even one seed fits"
        raise PackTooLarge(f"{seeds} seeds need about {gib(need)} on {device.type} ({gib(memory.kept)} per seed), "
                           f"{gib(free)} is free: {advice}")


def gib(n: int) -> str:
    """`n` bytes in GiB, for messages and tables."""
    return f"{n / 2**30:.2f} GiB"
