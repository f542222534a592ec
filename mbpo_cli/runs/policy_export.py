"""`mbpo export`: a run's deterministic policy as one self-contained file (TorchScript or ONNX), verified against
the policy `mbpo eval` runs before it is put in place, and its single-observation latency.

The exported program takes raw observations ``B x obs`` (float32, any batch size ``B``; a Dict or Tuple observation
flattened as training flattened it, gymnasium's ``FlattenObservation``) and returns the action as the task takes it,
computed as :func:`mbpo_cli.engine.envs.to_env_action` computes it: ``B x act`` float32 within the task's bounds,
``low + (a + 1) * 0.5 * (high - low)`` of the actor's tanh action ``a`` (SAC: tanh of its mean; TD3 and DDPG: the
actor's output; DHMBPO: tanh of its mean on observations standardized by its normalizer), or the greedy action's
index, int64 ``B`` (DQN). The agents' one-member
:class:`BatchedMLP` (weights ``1 x in x out``) is rewritten as ``nn.Linear`` layers: what the ONNX exporter maps to
Gemm and what dynamic INT8 quantization acts on.

Verification: the first observations met by the in-tool policy over seeded episodes (reset seeds ``seed,
seed + 1, ...``) go through the exported file as a user would run it (``torch.jit.load``, an
``onnxruntime.InferenceSession``); its actions must match the in-tool policy's within :data:`TOLERANCE` (DQN: the
same indices). The file is written under a hidden temporary name beside ``--out`` and renamed only once it passes
(:class:`mbpo_cli.runs.outputs.OutputFile`).
An INT8 file is not held to the tolerance: its deviation from the float policy, and its returns over seeded episodes
beside the float policy's, are reported instead.

ONNX needs the optional extra (onnx, onnxruntime, onnxscript: ``pip install 'mbpo-cli[onnx]'``), imported lazily.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mbpo_cli.agents.dhmbpo import DHMBPOActor
from mbpo_cli.agents.dqn import QNetwork
from mbpo_cli.agents.factory import BuiltAgent
from mbpo_cli.agents.networks import DeterministicActor
from mbpo_cli.agents.sac import Actor
from mbpo_cli.engine.env_wrappers import ObservationPart
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env, to_env_action
from mbpo_cli.nn.mlp import BatchedMLP
from mbpo_cli.runs.evaluation import Policy, load_policy, run_episodes
from mbpo_cli.runs.outputs import OutputFile
from mbpo_cli.runs.registry import Registry, RunInfo
from mbpo_cli.runs.session import RunError

FORMATS = ("torchscript", "onnx")
QUANTIZATIONS = ("int8",)
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
INSTALL_HINT = "pip install 'mbpo-cli[onnx]'"
INPUT, OUTPUT = "obs", "action"
"""The exported program's input and output names (ONNX)."""
TOLERANCE = 1e-5
"""Largest absolute difference allowed between the exported file's actions and the in-tool policy's (float export)."""
VERIFY_OBSERVATIONS = 512
RETURN_EPISODES = 10
"""Episodes an INT8 file and the float policy are each evaluated over (the same reset seeds)."""
WARMUP_CALLS = 300
TIMED_CALLS = 3000
VARIANTS = (("torchscript", None), ("torchscript", "int8"), ("onnx", None), ("onnx", "int8"))
"""What the latency benchmark times besides eager PyTorch: (format, quantization)."""

Act = Callable[[np.ndarray], np.ndarray]
"""A policy as the task sees it: observations ``B x obs`` float32 -> actions ``B x act`` float32 or indices ``B``."""


class ExportError(RunError):
    """Bad input to `mbpo export` (one line; the CLI exits 2)."""


class VerificationError(RuntimeError):
    """The exported file does not act as the run's policy (one line; the CLI exits 1; nothing is written)."""


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


def linear_layers(mlp: BatchedMLP, outputs: int | None = None) -> nn.Sequential:
    """The one-member ``mlp`` as ``nn.Linear`` layers with its activation between them (same weights);
    ``outputs`` keeps only the last layer's first outputs (SAC's mean, without its log-std)."""
    assert mlp.members == 1, "a policy network has one member"
    layers: list[nn.Module] = []
    last = len(mlp.weights) - 1
    for i, (weight, bias) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        w, b = weight[0].T, bias[0, 0]  # out x in, out
        if i == last and outputs is not None:
            w, b = w[:outputs], b[:outputs]
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        layers.append(linear)
        if i < last:
            layers.append(copy.deepcopy(mlp.activation))
    return nn.Sequential(*layers)


class BoundedAction(nn.Module):
    """``B x obs`` float32 -> the task's action ``B x act`` float32: ``low + (tanh(net(obs)) + 1) * 0.5 * range``,
    ``range = high - low`` (the operations of ``to_env_action``, in its order)."""

    def __init__(self, net: nn.Module, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.net = net
        # frozen parameters rather than buffers: typed as tensors without class annotations, which TorchScript
        # cannot read in a module with postponed annotations
        self.low = nn.Parameter(torch.tensor(low, dtype=torch.float32), requires_grad=False)  # a copy: not spec's
        self.range = nn.Parameter(torch.tensor(high - low, dtype=torch.float32), requires_grad=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions ``B x act`` within the task's bounds."""
        return self.low + (torch.tanh(self.net(obs)) + 1.0) * 0.5 * self.range


class Standardize(nn.Module):
    """``B x obs`` -> ``(obs - mean) / std``: the observation normalizer a DHMBPO actor acts through."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        # frozen parameters rather than buffers, as in BoundedAction (TorchScript and postponed annotations)
        self.mean = nn.Parameter(mean.detach().clone().float(), requires_grad=False)
        self.std = nn.Parameter(std.detach().clone().float(), requires_grad=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized observations ``B x obs``."""
        return (obs - self.mean) / self.std


class GreedyAction(nn.Module):
    """``B x obs`` float32 -> the index of the largest Q value, int64 ``B``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Greedy action indices ``B``."""
        return self.net(obs).argmax(dim=-1)


def policy_program(agent: BuiltAgent, spec: EnvSpec) -> nn.Module:
    """The agent's deterministic policy as a standalone module (no gradients, eval mode)."""
    net = agent.policy
    program: nn.Module
    if isinstance(net, QNetwork):
        program = GreedyAction(linear_layers(net.net))
    elif isinstance(net, Actor):
        program = BoundedAction(linear_layers(net.net, outputs=net.act_dim), spec.act_low, spec.act_high)
    elif isinstance(net, DHMBPOActor):
        body = nn.Sequential(Standardize(net.obs_mean, net.obs_std), linear_layers(net.net, outputs=net.act_dim))
        program = BoundedAction(body, spec.act_low, spec.act_high)
    elif isinstance(net, DeterministicActor):
        program = BoundedAction(linear_layers(net.net), spec.act_low, spec.act_high)
    else:
        raise ExportError(f"cannot export a {type(net).__name__} policy")
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


def module_act(program: nn.Module) -> Act:
    """``program`` run eagerly by PyTorch."""
    return lambda obs: program(torch.from_numpy(obs)).numpy()


def tool_act(agent: BuiltAgent, spec: EnvSpec) -> Act:
    """The agent's deterministic policy as `mbpo eval` acts: the agent's action, then ``to_env_action`` per row."""

    def act(obs: np.ndarray) -> np.ndarray:
        actions = agent.act(torch.from_numpy(obs), deterministic=True).numpy()
        return np.stack([np.asarray(to_env_action(a, spec)) for a in actions])

    return act


# ---------------------------------------------------------------------------------------------
# Episodes and comparisons
# ---------------------------------------------------------------------------------------------


def _one(actions: np.ndarray) -> np.ndarray | int:
    """The first action of a batch, as ``env.step`` takes it."""
    action = actions[0]
    return int(action) if action.ndim == 0 else action


def _row(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs, dtype=np.float32).reshape(1, -1)


def record_observations(env: gym.Env, act: Act, count: int, seed: int) -> tuple[np.ndarray, int]:
    """The first ``count`` observations ``count x obs`` met acting with ``act`` over episodes reset with seeds
    ``seed, seed + 1, ...``, and how many episodes they came from."""
    seen: list[np.ndarray] = []
    episodes = 0
    while True:
        obs, _ = env.reset(seed=seed + episodes)
        episodes += 1
        done = False
        while not done:
            x = _row(obs)
            seen.append(x[0])
            if len(seen) == count:
                return np.stack(seen), episodes
            obs, _, terminated, truncated, _ = env.step(_one(act(x)))
            done = terminated or truncated


def episode_returns(env: gym.Env, act: Act, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes reset with seeds ``seed, seed + 1, ...``, one observation at a time."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(_one(act(_row(obs))))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


@dataclass(frozen=True)
class Comparison:
    """How a file's actions compare with the policy's on the same observations."""

    observations: int
    max_deviation: float
    """Largest absolute difference of an action component (DQN: of the action index; 0 when all agree)."""
    differing: int
    """Observations whose action differs by more than :data:`TOLERANCE` (DQN: whose index differs)."""


def compare(actions: np.ndarray, reference: np.ndarray) -> Comparison:
    """``actions`` against ``reference`` (same shape and dtype, else VerificationError); NaN counts as differing."""
    if actions.shape != reference.shape or actions.dtype != reference.dtype:
        raise VerificationError(f"the exported file returned {actions.dtype} actions of shape {actions.shape}; "
                                f"the policy gives {reference.dtype} of shape {reference.shape}")
    deviation = np.abs(actions.astype(np.float64) - reference.astype(np.float64)).reshape(len(actions), -1)
    worst = deviation.max(axis=1)
    return Comparison(observations=len(actions), max_deviation=float(worst.max()),
                      differing=int(np.count_nonzero(~(worst <= TOLERANCE))))


def check_file(act: Act, obs: np.ndarray, reference: np.ndarray) -> Comparison:
    """A file's actions against ``reference``, for the whole batch ``N x obs`` and for one observation at a time
    (the batch dimension is dynamic, and INT8 scales its activations per batch): the worse of the two."""
    batch = compare(act(obs), reference)
    single = compare(np.concatenate([act(obs[i:i + 1]) for i in range(len(obs))]), reference)
    return Comparison(observations=len(obs), max_deviation=max(batch.max_deviation, single.max_deviation),
                      differing=max(batch.differing, single.differing))


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


def _mismatch(check: Comparison, discrete: bool, out: Path) -> VerificationError:
    if discrete:
        what = f"gives another greedy action than the run's policy on {check.differing} of {check.observations}"
    else:
        what = (f"differs from the run's policy by up to {check.max_deviation:.3g} (tolerance {TOLERANCE:g}) on "
                f"{check.differing} of {check.observations}")
    return VerificationError(f"verification failed: the exported policy {what} observations; {out} was not written")


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
        raise _mismatch(check, spec.discrete, named)
    if quantize is not None:
        int8_returns = episode_returns(env, exported, RETURN_EPISODES, seed)
        float_returns = run_episodes(policy, RETURN_EPISODES, seed).returns
    return Exported(path=named, fmt=fmt, quantize=quantize, size=partial.stat().st_size, obs_dim=spec.obs_dim,
                    act_dim=spec.act_dim, discrete=spec.discrete, seed=seed, episodes=episodes, check=check,
                    int8_returns=int8_returns, float_returns=float_returns, flattened=spec.flattened)


# ---------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------


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
        obs = _row(env.reset(seed=exported.seed)[0])
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
