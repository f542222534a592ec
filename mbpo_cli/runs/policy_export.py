"""`mbpo export`: a run's deterministic policy as one self-contained file (TorchScript or ONNX), verified against
the policy `mbpo eval` runs before it is put in place (its latency: `mbpo_cli.bench.latency`).

The exported program takes raw observations ``B x obs`` (float32, any batch size ``B``; a Dict or Tuple observation
flattened as training flattened it, gymnasium's ``FlattenObservation``) and returns the action as the task takes it,
computed as :func:`mbpo_cli.engine.envs.to_env_action` computes it: ``B x act`` float32 within the task's bounds,
``low + (a + 1) * 0.5 * (high - low)`` of the agent's deterministic action ``a`` in ``[-1, 1]``, or the greedy
action's index, int64 ``B`` (DQN). Each agent hands over that policy itself
(:meth:`mbpo_cli.agents.base.Agent.deterministic_policy`: SAC: tanh of its mean; TD3 and DDPG: the actor's output;
DHMBPO: tanh of its mean on observations standardized by its normalizer), in ``nn.Linear`` layers: what the ONNX
exporter maps to Gemm and what dynamic INT8 quantization acts on.

Verification: the first observations met by the in-tool policy over seeded episodes (reset seeds ``seed,
seed + 1, ...``) go through the exported file as a user would run it (``torch.jit.load``, an
``onnxruntime.InferenceSession``); its actions must match the in-tool policy's within :data:`TOLERANCE` (DQN: the
same indices). The file is written under a hidden temporary name beside ``--out`` and renamed only once it passes
(:class:`mbpo_cli.runs.outputs.OutputFile`).
An INT8 file is not held to the tolerance: its deviation from the float policy, and its returns over seeded episodes
beside the float policy's, are reported instead. The comparisons are :mod:`mbpo_cli.runs.export_verification`'s; the
latency benchmark (`--bench`) is :mod:`mbpo_cli.bench.latency`.

ONNX needs the optional extra (onnx, onnxruntime, onnxscript: ``pip install 'mbpo-cli[onnx]'``), imported lazily.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mbpo_cli.agents.factory import BuiltAgent
from mbpo_cli.engine.env_wrappers import ObservationPart
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.evaluation import run_episodes
from mbpo_cli.runs.export_verification import (
    Act,
    Comparison,
    check_file,
    episode_returns,
    mismatch,
    record_observations,
    tool_act,
)
from mbpo_cli.runs.outputs import OutputFile
from mbpo_cli.runs.policy import Policy, load_policy
from mbpo_cli.runs.registry import Registry, RunInfo

FORMATS = ("torchscript", "onnx")
QUANTIZATIONS = ("int8",)
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
INSTALL_HINT = "pip install 'mbpo-cli[onnx]'"
INPUT, OUTPUT = "obs", "action"
"""The exported program's input and output names (ONNX)."""
VERIFY_OBSERVATIONS = 512
RETURN_EPISODES = 10
"""Episodes an INT8 file and the float policy are each evaluated over (the same reset seeds)."""


class ExportError(RunError):
    """Bad input to `mbpo export` (one line; the CLI exits 2)."""


# ---------------------------------------------------------------------------------------------
# Checks before any work
# ---------------------------------------------------------------------------------------------


def onnx_missing() -> str | None:
    """None when the ONNX extra is installed, else the missing packages in words (``onnxruntime and onnxscript``)."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    return " and ".join(missing) or None


def check_request(fmt: str, quantize: str | None, seed: int, threads: int) -> None:
    """ExportError (one line) for an unknown format or quantization, a bad seed or thread count, or ONNX without its
    extra (the output file is checked by :func:`mbpo_cli.runs.outputs.check_file`)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: expected torchscript or onnx, got {fmt!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize: expected int8, got {quantize!r}")
    if seed < 0:
        raise ExportError(f"--seed: must be >= 0, got {seed}")
    if threads < 1:
        raise ExportError(f"--threads: must be at least 1, got {threads}")
    missing = onnx_missing()
    if fmt == "onnx" and missing:
        raise ExportError(f"--format onnx needs the onnx extra ({missing} not installed): {INSTALL_HINT}")
    if quantize is not None and fmt == "torchscript" and torch.backends.quantized.engine == "none":
        raise ExportError("--quantize int8: this torch build has no quantized engine; try --format onnx")


def export_source(registry: Registry, run: RunInfo, runs_dir: Path, which: str) -> Policy:
    """The run's policy at checkpoint ``which`` (latest, best or an env step); ExportError when it has none."""
    if not registry.checkpoints(run.id):
        raise ExportError(f"run {run.id} has no checkpoints to export")
    return load_policy(registry, run, runs_dir, which)


# ---------------------------------------------------------------------------------------------
# The program
# ---------------------------------------------------------------------------------------------


class BoundedAction(nn.Module):
    """``B x obs`` float32 -> the task's action ``B x act`` float32: ``low + (policy(obs) + 1) * 0.5 * range``,
    ``range = high - low``, of a policy's action in ``[-1, 1]`` (the operations of ``to_env_action``, in its
    order)."""

    def __init__(self, policy: nn.Module, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.policy = policy
        # frozen parameters rather than buffers: typed as tensors without class annotations, which TorchScript
        # cannot read in a module with postponed annotations
        self.low = nn.Parameter(torch.tensor(low, dtype=torch.float32), requires_grad=False)  # a copy: not spec's
        self.range = nn.Parameter(torch.tensor(high - low, dtype=torch.float32), requires_grad=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions ``B x act`` within the task's bounds."""
        return self.low + (self.policy(obs) + 1.0) * 0.5 * self.range


def policy_program(agent: BuiltAgent, spec: EnvSpec) -> nn.Module:
    """The agent's deterministic policy (`Agent.deterministic_policy`) as the task takes it, a standalone module (no
    gradients, eval mode): its actions rescaled to the task's bounds, or its greedy indices as they are."""
    policy = agent.deterministic_policy()
    program = policy if spec.discrete else BoundedAction(policy, spec.act_low, spec.act_high)
    return program.requires_grad_(False).eval()


# ---------------------------------------------------------------------------------------------
# Writing and loading files
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No warnings or log lines from the exporters and quantizers: nothing a user can act on. In torch 2.13
    ``torch.jit.script``/``save``/``load`` and ``torch.ao.quantization`` warn that they are deprecated, quantized
    tensors warn likewise, the ONNX exporter logs the torchvision operators it skips and onnxruntime's quantizer
    asks on the root logger for a pre-processing step that a small MLP does not need."""
    disabled = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(disabled)


def export_onnx(program: nn.Module, path: Path, example: torch.Tensor) -> None:
    """``program`` as a single ONNX file with a dynamic batch dimension (``example``: ``B x obs``, B >= 2)."""
    # The torch.export-based exporter (dynamo=True, torch's default since 2.9; it needs onnxscript, in the extra):
    # the exporter torch maintains. The TorchScript-based one (dynamo=False) still works in torch 2.13 but warns
    # that it will be removed. Both give the same Gemm/Relu/Tanh graph for these MLPs. external_data=False keeps
    # the weights inside the file (the default writes them beside it, as FILE.data).
    torch.onnx.export(program, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_shapes={"obs": {0: torch.export.Dim("batch")}}, dynamo=True, external_data=False,
                      verbose=False)


def write_program(program: nn.Module, fmt: str, quantize: str | None, path: Path, example: torch.Tensor) -> None:
    """Write ``program`` to ``path`` as TorchScript or ONNX, its Linear layers dynamically quantized to INT8 when
    ``quantize`` (TorchScript: ``torch.ao.quantization.quantize_dynamic`` then scripted; ONNX: onnxruntime's
    ``quantize_dynamic`` on the float file)."""
    with quiet():
        if fmt == "torchscript":
            module = program
            if quantize is not None:
                module = torch.ao.quantization.quantize_dynamic(program, {nn.Linear}, dtype=torch.qint8)
            torch.jit.save(torch.jit.script(module), str(path))
        elif quantize is None:
            export_onnx(program, path, example)
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory() as tmp:
                float_file = Path(tmp) / "float.onnx"
                export_onnx(program, float_file, example)
                quantize_dynamic(str(float_file), str(path), weight_type=QuantType.QInt8)


def file_act(path: Path, fmt: str, threads: int) -> Act:
    """The exported file loaded as a user would load it, on the CPU: ``torch.jit.load``, or an onnxruntime session
    with ``threads`` intra-op threads (torch's threads are the caller's)."""
    if fmt == "torchscript":
        with quiet():
            module = torch.jit.load(str(path), map_location="cpu")
        return lambda obs: module(torch.from_numpy(obs)).numpy()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda obs: session.run(None, {INPUT: obs})[0]


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """A written, verified file and what its verification found."""

    path: Path
    fmt: str
    quantize: str | None
    size: int
    """Bytes."""
    obs_dim: int
    act_dim: int
    discrete: bool
    """The file returns action indices ``B`` (int64) rather than actions ``B x act_dim`` (float32)."""
    seed: int
    episodes: int
    """Episodes the verification observations came from (reset seeds ``seed, seed + 1, ...``)."""
    check: Comparison
    """The file's actions against the in-tool (float) policy's."""
    int8_returns: list[float] | None = None
    """INT8: the file's returns over :data:`RETURN_EPISODES` episodes reset with seeds ``seed, seed + 1, ...``."""
    float_returns: list[float] | None = None
    """INT8: the float policy's returns over the same episodes (what `mbpo eval --seed SEED` reports)."""
    flattened: tuple[ObservationPart, ...] = ()
    """Where each part of the task's Dict or Tuple observation lies in the flat ``obs`` the file takes (() when the
    task's observation is flat): the observation flattened as training flattened it (gymnasium's
    ``FlattenObservation``)."""


def export_policy(policy: Policy, fmt: str, quantize: str | None, out: OutputFile, seed: int = 0,
                  threads: int = 1) -> Exported:
    """Write ``policy`` to ``out`` (its request checked with :func:`check_request`) and verify the file on the
    observations of seeded episodes; VerificationError (nothing written) when a float file's actions are not the
    policy's."""
    torch.set_num_threads(threads)
    env = make_env(policy.config.env)
    try:
        with out.writing() as partial:
            exported = _write_verified(policy, env, fmt, quantize, partial, out.named, seed, threads)
    finally:
        env.close()
    return exported


def _write_verified(policy: Policy, env: gym.Env, fmt: str, quantize: str | None, partial: Path, named: Path,
                    seed: int, threads: int) -> Exported:
    """Write the file at ``partial`` and verify it (see :func:`export_policy`); what it holds, as ``named``."""
    spec = env_spec(env)
    tool = tool_act(policy.agent, spec)
    observations, episodes = record_observations(env, tool, VERIFY_OBSERVATIONS, seed)
    write_program(policy_program(policy.agent, spec), fmt, quantize, partial, torch.from_numpy(observations[:2]))
    exported = file_act(partial, fmt, threads)
    check = check_file(exported, observations, tool(observations))
    int8_returns: list[float] | None = None
    float_returns: list[float] | None = None
    if quantize is None and check.differing:
        raise mismatch(check, spec.discrete, named)
    if quantize is not None:
        int8_returns = episode_returns(env, exported, RETURN_EPISODES, seed)
        float_returns = run_episodes(policy, RETURN_EPISODES, seed).returns
    return Exported(path=named, fmt=fmt, quantize=quantize, size=partial.stat().st_size, obs_dim=spec.obs_dim,
                    act_dim=spec.act_dim, discrete=spec.discrete, seed=seed, episodes=episodes, check=check,
                    int8_returns=int8_returns, float_returns=float_returns, flattened=spec.flattened)
