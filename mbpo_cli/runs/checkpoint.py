"""Full-state checkpoints: capture and restore a RunState exactly, written atomically and verified.

A checkpoint holds tensors and plain Python values only, so it loads with
`torch.load(..., weights_only=True)` (no arbitrary pickle). Files are written to a temporary file in
the same folder, fsynced and renamed; their sha256 is recorded so a corrupt file is detected before
it is loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbpo_cli import __version__
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.envs import EnvSpec, get_env_state, set_env_state
from mbpo_cli.engine.loop import models_of
from mbpo_cli.engine.pipeline import ModelJob
from mbpo_cli.engine.state import PHASES, EpochAccumulator, RunState
from mbpo_cli.models.ensemble import load_model_optimizer

FORMAT_VERSION = 1
"""Bumped whenever the checkpoint layout changes; older checkpoints are refused with a clear error."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read or used (one-line message)."""


def _tensorize(value: Any) -> Any:
    """numpy arrays -> tensors, recursively (weights_only loading accepts tensors, not arrays)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _tensorize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tensorize(v) for v in value)
    return value


def capture(state: RunState) -> dict[str, Any]:
    """Everything needed to continue `state` bit for bit."""
    acc = state.epoch_acc
    payload: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "version": __version__,
        "config": state.config.to_dict(),
        "device": str(state.device),
        "counters": {
            "env_step": state.env_step,
            "agent_updates": state.agent_updates,
            "k": state.k,
            "model_trained_at": state.model_trained_at,
            "model_generations": list(state.model_generations),
            "episode_return": state.episode_return,
            "episode_length": state.episode_length,
        },
        "obs": torch.from_numpy(state.obs.copy()),
        "agent": state.agent.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in state.agent.optimizers().items()},
        "real_buffer": _buffer_state(state.real_buffer),
        "model_info": dict(state.model_info),
        "epoch_acc": {
            "sums": {k: v.cpu() for k, v in acc.sums.items()},
            "counts": dict(acc.counts),
            "updates": acc.updates,
            "seconds": dict(acc.seconds),
            "episode_returns": list(acc.episode_returns),
        },
        "rng": {
            "generators": {name: g.get_state() for name, g in state.generators.items()},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_global": _tensorize(list(np.random.get_state())),
            "python": random.getstate(),
            "exploration": state.rng.bit_generator.state,
        },
        "env": _tensorize(get_env_state(state.env)),
    }
    if state.model is not None and state.model_optimizer is not None and state.model_buffer is not None:
        payload["model"] = state.model.state_dict()
        payload["model_optimizer"] = state.model_optimizer.state_dict()
        payload["model_buffer"] = _buffer_state(state.model_buffer)
    if state.done_model is not None and state.done_optimizer is not None:
        payload["done_model"] = state.done_model.state_dict()
        payload["done_optimizer"] = state.done_optimizer.state_dict()
    if state.initial_states is not None:
        payload["initial_states"] = state.initial_states.cpu()
    if state.double_horizon is not None:
        payload["double_horizon"] = {"model": state.double_horizon.model.state_dict(),
                                     "labels": state.double_horizon.labels.state_dict()}
    if state.model_job is not None:
        payload["model_job"] = _job_state(state.model_job.result())
    return payload


def _job_state(job: ModelJob) -> dict[str, Any]:
    """A finished background retrain (`train.pipeline`): its models, optimizers, generators and metrics."""
    models = job.models
    saved: dict[str, Any] = {
        "started_at": job.started_at,
        "info": dict(job.info),
        "generators": {name: g.get_state() for name, g in job.generators.items()},
        "model": models.model.state_dict(),
        "model_optimizer": models.optimizer.state_dict(),
    }
    if models.done_model is not None and models.done_optimizer is not None:
        saved["done_model"] = models.done_model.state_dict()
        saved["done_optimizer"] = models.done_optimizer.state_dict()
    return saved


def _restore_job(state: RunState, saved: dict[str, Any]) -> ModelJob:
    """The finished background retrain a checkpoint holds, on this run's device."""
    models = models_of(state).clone()
    models.model.load_state_dict(saved["model"])
    load_model_optimizer(models.optimizer, saved["model_optimizer"])
    _set_lr(models.optimizer, state.config.model.lr)
    if models.done_model is not None and models.done_optimizer is not None:
        models.done_model.load_state_dict(saved["done_model"])
        models.done_optimizer.load_state_dict(saved["done_optimizer"])
        _set_lr(models.done_optimizer, state.config.done_model.lr)
    generators = {}
    for name, generator_state in saved["generators"].items():
        generators[name] = torch.Generator(device=state.device)
        generators[name].set_state(generator_state)
    return ModelJob.finished(models, generators, int(saved["started_at"]), saved["info"])


def restore(state: RunState, payload: dict[str, Any]) -> bool:
    """Load `payload` into a freshly built `state` of the same config.

    Returns True when the continuation is exact (same device type as the checkpoint); across
    devices the torch generators cannot be restored and are reseeded from the seed and env step.
    """
    if payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format {payload.get('format')} (mbpo {payload.get('version')}) is not "
            f"readable by mbpo {__version__} (format {FORMAT_VERSION})"
        )
    device = state.device
    counters = payload["counters"]
    state.env_step = int(counters["env_step"])
    state.agent_updates = int(counters.get("agent_updates", counters.get("sac_updates", 0)))
    state.k = int(counters["k"])
    trained_at = counters.get("model_trained_at", state.env_step)  # 0 in a file of a run with no model trained yet
    state.model_trained_at = None if trained_at is None or not payload["model_info"] else int(trained_at)
    state.model_generations = [int(n) for n in counters.get("model_generations", [])]
    state.episode_return = float(counters["episode_return"])
    state.episode_length = int(counters["episode_length"])
    state.obs = payload["obs"].numpy().copy()
    state.agent.load_state_dict(payload["agent"])
    state.agent.load_optimizer_states(payload["optimizers"])
    for opt in state.agent.optimizers().values():
        _set_lr(opt, getattr(state.config, state.config.agent.name).lr)
    state.real_buffer = _load_buffer(payload["real_buffer"], state.real_buffer.capacity, state.spec, device)
    if state.model is not None:
        assert state.model_optimizer is not None
        state.model.load_state_dict(payload["model"])
        load_model_optimizer(state.model_optimizer, payload["model_optimizer"])
        state.model.graph = None
        _set_lr(state.model_optimizer, state.config.model.lr)
        saved = payload["model_buffer"]
        state.model_buffer = _load_buffer(saved, int(saved["capacity"]), state.spec, device)
    if state.done_model is not None:
        assert state.done_optimizer is not None
        state.done_model.load_state_dict(payload["done_model"])
        state.done_optimizer.load_state_dict(payload["done_optimizer"])
        _set_lr(state.done_optimizer, state.config.done_model.lr)
    if "initial_states" in payload:
        state.initial_states = payload["initial_states"].to(device)
    if state.double_horizon is not None:
        state.double_horizon.model.load_state_dict(payload["double_horizon"]["model"])
        state.double_horizon.labels.load_state_dict(payload["double_horizon"]["labels"])
    state.model_job = _restore_job(state, payload["model_job"]) if "model_job" in payload else None
    state.model_info = dict(payload["model_info"])
    acc = payload["epoch_acc"]
    updates = int(acc["updates"])
    sums = {k: v.to(device) for k, v in acc["sums"].items() if k != "alpha"}  # alpha: an epoch-end value now
    state.epoch_acc = EpochAccumulator(
        sums=sums,
        counts={k: int(acc.get("counts", {}).get(k, updates)) for k in sums},
        updates=updates,
        seconds={**dict.fromkeys(PHASES, 0.0),
                 **{("agent" if k == "sac" else k): v for k, v in acc["seconds"].items()}},
        episode_returns=list(acc["episode_returns"]),
    )
    rng = payload["rng"]
    exact = torch.device(payload["device"]).type == device.type
    for offset, (name, generator) in enumerate(state.generators.items()):
        if exact and name in rng["generators"]:
            generator.set_state(rng["generators"][name])
        elif exact:
            continue  # a generator newer than the checkpoint, unused by its run: it keeps its seeded state
        else:
            generator.manual_seed(state.config.train.seed * 1000 + 7 * state.env_step + offset)
    torch.set_rng_state(rng["torch"])
    if exact and device.type == "cuda" and rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, cached = rng["numpy_global"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    random.setstate(_as_tuples(rng["python"]))
    state.rng.bit_generator.state = rng["exploration"]
    env_state = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in payload["env"].items()}
    set_env_state(state.env, env_state)
    return exact


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply the config's learning rate: `load_state_dict` restores the saved one (resume --force may change it)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _buffer_state(buffer: ReplayBuffer) -> dict[str, Any]:
    """The buffer's contents plus its write position (sampling draws physical slots, so the layout matters)."""
    return {**buffer.state_dict(), "ptr": buffer.ptr}


def _load_buffer(saved: dict[str, Any], capacity: int, spec: EnvSpec, device: torch.device) -> ReplayBuffer:
    """A buffer of `capacity` holding `saved`, with the saved physical layout when the capacity is unchanged.

    `ReplayBuffer.state_dict` stores the transitions oldest first; once a ring buffer has wrapped,
    its oldest transition sits at slot `ptr`, not 0, so the rows are rotated back into place (the
    indices drawn by `sample` would otherwise pick other transitions after a resume). A different
    capacity (a run extended with --steps) keeps the newest transitions, oldest first.
    """
    buffer = ReplayBuffer(int(saved["capacity"]), spec.obs_dim, spec.act_dim, device)
    buffer.load_state_dict({k: v for k, v in saved.items() if k != "ptr"})
    ptr = int(saved.get("ptr", 0))
    if buffer.size == buffer.capacity and ptr:
        for store in buffer.data:
            store.copy_(torch.roll(store, ptr, dims=0))
        buffer.ptr = ptr
    return buffer if buffer.capacity == capacity else buffer.resized(capacity)


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def save_file(payload: dict[str, Any], path: Path) -> tuple[int, str]:
    """Write `payload` atomically to `path` (temp file, fsync, rename); returns (bytes, sha256)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from None
    return len(data), hashlib.sha256(data).hexdigest()


def load_file(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Read a checkpoint, verifying its sha256 when given; CheckpointError if missing or corrupt."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"checkpoint {path} is corrupt (sha256 mismatch)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise CheckpointError(f"checkpoint {path} cannot be loaded: {_first_line(err)}") from None
        raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain data, which mbpo "
                              "never writes: it was not loaded (loading it could run code)") from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {_first_line(err)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} is not an mbpo checkpoint")
    return payload


def _first_line(error: Exception) -> str:
    """The first line of an error message, without terminal escape codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()[0] if str(error).strip() else repr(error)


FULL_LAYOUT: dict[str, Any] = {
    "format": int, "config": dict, "device": str, "obs": torch.Tensor, "agent": dict, "optimizers": dict,
    "real_buffer": dict, "model_info": dict, "env": dict,
    "counters": {"env_step": int, "k": int, "episode_return": float, "episode_length": int},
    "epoch_acc": {"sums": dict, "updates": int, "seconds": dict, "episode_returns": list},
    "rng": {"generators": dict, "torch": torch.Tensor, "numpy_global": list, "python": tuple, "exploration": dict},
}
"""What a full checkpoint must hold for `restore` (key -> type, or a nested layout)."""


def check_full(payload: dict[str, Any], path: str) -> None:
    """CheckpointError unless `payload` has the layout of a full checkpoint (a file that unpickles safely but
    holds something else is as unusable as a corrupt one)."""

    def walk(node: dict[str, Any], layout: dict[str, Any], where: str) -> None:
        for key, kind in layout.items():
            value = node.get(key)
            if isinstance(kind, dict):
                if not isinstance(value, dict):
                    raise CheckpointError(f"checkpoint {path} is not a full mbpo checkpoint (no {where}{key})")
                walk(value, kind, f"{where}{key}.")
                continue
            if not isinstance(value, (int, float) if kind is float else kind):
                raise CheckpointError(f"checkpoint {path} is not a full mbpo checkpoint ({where}{key} is missing "
                                      "or of the wrong type)")

    walk(payload, FULL_LAYOUT, "")


def policy_payload(state: RunState, eval_return: float) -> dict[str, Any]:
    """A small file with the acting network only (the actor, or DQN's Q network): the best-evaluation policy."""
    return {
        "format": FORMAT_VERSION,
        "version": __version__,
        "config": state.config.to_dict(),
        "env_step": state.env_step,
        "eval_return": eval_return,
        "policy": state.agent.policy.state_dict(),
    }
