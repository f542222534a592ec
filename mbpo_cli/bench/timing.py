"""How the benchmarks time a region, and the machine's arithmetic floor that every report starts with.

Every timed region is warmed up, repeated, and bracketed by device synchronization; results are medians (with min
and max) in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one component, in milliseconds."""

    name: str
    samples: list[float]
    per_env_step: float
    """How many times the component runs per real env step in a full run (for the share column)."""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


Progress = Callable[[str, int, int], None]
"""Told (what is being done, how much of it is done, out of how much) as a benchmark goes."""


def silent(_what: str, _done: int, _total: int) -> None:
    """The default progress: none."""


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> list[float]:
    """Wall time of `fn` in ms, `repeats` times after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


FLOOR_SIZE = 256
"""The floor's matmul: one `torch.bmm` of two 1 x 256 x 256 fp32 matrices, the width of the agents' layers."""


@dataclass(frozen=True)
class Floor:
    """The machine's arithmetic floor: what one fp32 matmul of the networks' width reaches here."""

    gflops: float
    """Median GFLOP/s of the `FLOOR_SIZE` cubed `torch.bmm` (2 n^3 floating-point operations a call)."""
    threads: int
    """torch's CPU threads while it was measured."""
    device: str


def matmul_floor(device: torch.device, repeats: int = 200) -> Floor:
    """Measure the floor on `device`: a time on this machine compares with one on another as the floors compare."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(1, FLOOR_SIZE, FLOOR_SIZE, generator=generator, device=device)
    b = torch.randn(1, FLOOR_SIZE, FLOOR_SIZE, generator=generator, device=device)
    out = torch.empty(1, FLOOR_SIZE, FLOOR_SIZE, device=device)
    samples = measure(lambda: torch.bmm(a, b, out=out), device, repeats, warmup=20)
    seconds = statistics.median(samples) / 1000.0
    return Floor(2 * FLOOR_SIZE**3 / seconds / 1e9, torch.get_num_threads(), str(device))
