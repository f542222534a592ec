"""An exported policy's latency (`mbpo export --bench`): p50 and p99 of one action on one observation (batch 1) on
the CPU, for eager PyTorch and for each runtime and quantization an export can produce here."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mbpo_cli.engine.envs import env_spec, make_env
from mbpo_cli.runs.export_verification import Act, as_row, module_act
from mbpo_cli.runs.policy import Policy
from mbpo_cli.runs.policy_export import INSTALL_HINT, Exported, file_act, onnx_missing, policy_program, write_program

WARMUP_CALLS = 300
TIMED_CALLS = 3000
VARIANTS = (("torchscript", None), ("torchscript", "int8"), ("onnx", None), ("onnx", "int8"))
"""What the latency benchmark times besides eager PyTorch: (format, quantization)."""


@dataclass(frozen=True)
class Latency:
    """One runtime's time for one action on one observation (batch 1), in microseconds; None when skipped."""

    runtime: str
    p50_us: float | None
    p99_us: float | None
    note: str
    """Why it was skipped, or that it timed the exported file itself."""


def time_calls(act: Act, obs: np.ndarray, warmup: int = WARMUP_CALLS, calls: int = TIMED_CALLS) -> tuple[float, float]:
    """p50 and p99 in microseconds of ``calls`` timed calls ``act(obs)`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        act(obs)
    times = np.empty(calls, dtype=np.int64)
    for i in range(calls):
        start = time.perf_counter_ns()
        act(obs)
        times[i] = time.perf_counter_ns() - start
    p50, p99 = np.percentile(times, [50, 99]) / 1e3
    return float(p50), float(p99)


def runtime_name(fmt: str, quantize: str | None) -> str:
    """How the benchmark names a variant: ``TorchScript``, ``ONNX Runtime INT8``, ..."""
    name = "TorchScript" if fmt == "torchscript" else "ONNX Runtime"
    return f"{name} INT8" if quantize == "int8" else name


def _skipped(fmt: str, quantize: str | None) -> str | None:
    missing = onnx_missing()
    if fmt == "onnx" and missing:
        return f"skipped: {missing} not installed ({INSTALL_HINT})"
    if fmt == "torchscript" and quantize is not None and torch.backends.quantized.engine == "none":
        return "skipped: this torch build has no quantized engine"
    return None


def bench_latency(policy: Policy, exported: Exported, threads: int = 1, warmup: int = WARMUP_CALLS,
                  calls: int = TIMED_CALLS) -> list[Latency]:
    """p50 and p99 of one action on one observation (the first of the verification episodes) on the CPU with
    ``threads`` threads: eager PyTorch, then each of :data:`VARIANTS` that can run here (the exported file itself
    for its own variant, the others written to a temporary folder)."""
    torch.set_num_threads(threads)
    env = make_env(policy.config.env)
    try:
        spec = env_spec(env)
        obs = as_row(env.reset(seed=exported.seed)[0])
    finally:
        env.close()
    program = policy_program(policy.agent, spec)
    rows = [Latency("PyTorch eager", *time_calls(module_act(program), obs, warmup, calls), "")]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, quantize in VARIANTS:
            name = runtime_name(fmt, quantize)
            skipped = _skipped(fmt, quantize)
            if skipped is not None:
                rows.append(Latency(name, None, None, skipped))
                continue
            path, note = exported.path, "the exported file"
            if (fmt, quantize) != (exported.fmt, exported.quantize):
                path, note = Path(tmp) / f"{fmt}-{quantize or 'float'}", ""
                write_program(program, fmt, quantize, path, torch.from_numpy(np.repeat(obs, 2, axis=0)))
            rows.append(Latency(name, *time_calls(file_act(path, fmt, threads), obs, warmup, calls), note))
    return rows
