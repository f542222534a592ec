"""`mbpo export`: a run's deterministic policy as a verified TorchScript or ONNX file, and its latency on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from mbpo_cli.cli import common
from mbpo_cli.cli.common import JsonOpt, OverwriteOpt, emit_json, handled, registry_of

if TYPE_CHECKING:
    from mbpo_cli.bench.latency import Latency
    from mbpo_cli.runs.policy import Policy
    from mbpo_cli.runs.policy_export import Exported
    from mbpo_cli.runs.registry import RunInfo

FORMAT_NAMES = {"torchscript": "TorchScript", "onnx": "ONNX"}


def export(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    fmt: Annotated[str, typer.Option("--format", help="torchscript, or onnx (needs: pip install 'mbpo-cli[onnx]').")],
    out: Annotated[Path, typer.Option("--out", help="The file to write (its folder must exist; not the registry or "
                                      "anything in a run's folder).")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="latest, best, or an env step.")] = "latest",
    quantize: Annotated[str | None, typer.Option("--quantize", help="int8: dynamic INT8 quantization of the Linear "
                                                 "layers (compared with the float policy, not held to 1e-5).")]
    = None,
    seed: Annotated[int, typer.Option("--seed", help="Verification episode i resets the env with seed + i.")] = 0,
    bench: Annotated[bool, typer.Option("--bench", help="Then time one action on one observation on the CPU: eager "
                                        "PyTorch, TorchScript, ONNX Runtime and INT8.")] = False,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads of torch and of ONNX Runtime (intra-op).")]
    = 1,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a run's deterministic policy as one TorchScript or ONNX file, verified before it is put in place.

    The file takes raw observations `B x obs` (float32, any batch size; a Dict observation flattened as training
    flattened it) and returns the action as the task takes it: `B x act` float32 within the task's bounds (SAC,
    TD3, DDPG), or the greedy action's index, int64 `B` (DQN).
    On 512 observations of seeded episodes its actions must be the run's policy's within 1e-5 (DQN: the same
    indices), else nothing is written (exit 1). An INT8 file is reported against the float policy instead: its
    largest deviation, and its returns over 10 episodes beside the float policy's.

    OUT is written under a temporary name beside it and renamed into place once verified; an existing file is
    replaced only with --overwrite. The registry and anything in a run's folder (its checkpoints) are refused.

    Examples:

        mbpo export 3f9a1c2e --format torchscript --out policy.pt --overwrite

        mbpo export 3f9a1c2e --checkpoint best --format onnx --out policy.onnx --bench

        mbpo export 3f9a1c2e --format onnx --quantize int8 --out policy-int8.onnx --json
    """
    from mbpo_cli.bench.latency import bench_latency
    from mbpo_cli.runs import outputs, policy_export
    from mbpo_cli.runs.export_verification import VerificationError

    with handled(ctx):
        policy_export.check_request(fmt, quantize, seed, threads)
        output = outputs.check_file("--out", out, ctx.obj.runs_dir, overwrite)
        registry = registry_of(ctx, run, read_only=True)
        info = registry.get_run(run)
        policy = policy_export.export_source(registry, info, ctx.obj.runs_dir, checkpoint)
        try:
            exported = policy_export.export_policy(policy, fmt, quantize, output, seed, threads)
        except VerificationError as error:
            common.err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        latencies = bench_latency(policy, exported, threads) if bench else None
        if as_json:
            emit_json(export_data(info, policy, exported, latencies, threads))
            return
        show_export(info, policy, exported)
        if latencies is not None:
            show_latencies(latencies, threads)


def _seeds(seed: int, episodes: int) -> str:
    return f"reset seed {seed}" if episodes == 1 else f"reset seeds {seed}-{seed + episodes - 1}"


def _signature(exported: Exported) -> str:
    from mbpo_cli.engine.env_wrappers import describe_parts

    output = f"B int64 (the greedy action's index, 0 to {exported.act_dim - 1})" if exported.discrete else \
        f"B x {exported.act_dim} float32 (within the task's bounds)"
    parts = describe_parts(exported.flattened)
    flat = f" (the task's observation flattened, gymnasium's FlattenObservation: {parts})" if parts else ""
    return f"input obs: B x {exported.obs_dim} float32{flat}; output action: {output}"


def show_export(info: RunInfo, policy: Policy, exported: Exported) -> None:
    """What was written, what it takes and returns, and what its verification found."""
    from mbpo_cli.runs.export_verification import TOLERANCE
    from mbpo_cli.runs.policy_export import RETURN_EPISODES

    check = exported.check
    kind = FORMAT_NAMES[exported.fmt] + (" INT8" if exported.quantize else "")
    print_line(f"exported run {info.id} ({info.name}), checkpoint {policy.label}, to {exported.path}: {kind}, "
               f"{exported.size / 1000:,.1f} kB")
    print_line(_signature(exported))
    where = f"{check.observations} observations of {exported.episodes} episodes " \
            f"({_seeds(exported.seed, exported.episodes)})"
    if exported.quantize is None:
        found = f"the same greedy action on all {check.observations}" if exported.discrete else \
            f"max deviation from the run's policy {check.max_deviation:.2g} (tolerance {TOLERANCE:g})"
        print_line(f"verified on {where}: {found}")
        return
    agree = check.observations - check.differing
    found = f"the float policy's greedy action on {agree} of {check.observations}" if exported.discrete else \
        f"max deviation from the float policy {check.max_deviation:.2g} (INT8 is not held to {TOLERANCE:g})"
    print_line(f"INT8 on {where}: {found}")
    table = Table(title=f"returns over {RETURN_EPISODES} episodes ({_seeds(exported.seed, RETURN_EPISODES)})")
    for column in ("policy", "mean", "std", "min", "max"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for label, returns in (("INT8 (this file)", exported.int8_returns), ("float (mbpo eval)", exported.float_returns)):
        values = np.asarray(returns)
        table.add_row(label, *(f"{v:,.2f}" for v in (values.mean(), values.std(), values.min(), values.max())))
    common.out.print(table)


def show_latencies(latencies: list[Latency], threads: int) -> None:
    """The latency table: p50 and p99 per runtime, skipped ones with their reason."""
    from mbpo_cli.bench.latency import TIMED_CALLS, WARMUP_CALLS

    table = Table(title=f"one action (batch 1), CPU, {threads} thread{'' if threads == 1 else 's'}",
                  caption=f"{TIMED_CALLS:,} timed calls after {WARMUP_CALLS} warm-up calls")
    for column in ("runtime", "p50 (µs)", "p99 (µs)", "note"):
        table.add_column(column, justify="right" if column.startswith("p") else "left")
    for row in latencies:
        timed = row.p50_us is not None and row.p99_us is not None
        table.add_row(row.runtime, f"{row.p50_us:,.1f}" if timed else "-", f"{row.p99_us:,.1f}" if timed else "-",
                      row.note)
    common.out.print(table)


def print_line(text: str) -> None:
    """One line of plain text (no markup, no highlighting) on stdout."""
    common.out.print(text, markup=False, highlight=False, soft_wrap=True)


def export_data(info: RunInfo, policy: Policy, exported: Exported, latencies: list[Latency] | None,
                threads: int) -> dict[str, Any]:
    """The `--json` object."""
    from mbpo_cli.bench.latency import TIMED_CALLS, WARMUP_CALLS
    from mbpo_cli.runs.export_verification import TOLERANCE

    check = exported.check
    return {
        "run_id": info.id, "run_name": info.name, "checkpoint": str(policy.label),
        "checkpoint_step": policy.checkpoint.step, "format": exported.fmt, "quantize": exported.quantize,
        "file": str(exported.path), "bytes": exported.size,
        "input": {"name": "obs", "shape": ["B", exported.obs_dim], "dtype": "float32",
                  "flattened": [{"key": p.key, "start": p.start, "stop": p.stop} for p in exported.flattened]},
        "output": {"name": "action", "shape": ["B"] if exported.discrete else ["B", exported.act_dim],
                   "dtype": "int64" if exported.discrete else "float32"},
        "verification": {"against": "float policy", "observations": check.observations,
                         "episodes": exported.episodes, "seed": exported.seed,
                         "max_deviation": check.max_deviation, "differing": check.differing,
                         "tolerance": None if exported.quantize else TOLERANCE},
        "returns": None if exported.quantize is None else {"seed": exported.seed, "int8": exported.int8_returns,
                                                           "float": exported.float_returns},
        "bench": None if latencies is None else {
            "threads": threads, "warmup_calls": WARMUP_CALLS, "timed_calls": TIMED_CALLS,
            "results": [{"runtime": r.runtime, "p50_us": r.p50_us, "p99_us": r.p99_us, "note": r.note}
                        for r in latencies]},
    }
