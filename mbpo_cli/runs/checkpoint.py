"""Full-state checkpoints of a RunState, written atomically and verified; and the best-evaluation policy file.

What a checkpoint holds is declared by the objects that own it (`RunState.checkpoint_state` and the components it
asks: agent, buffers, models, ...); this module adds the format and version, writes and reads the files, and checks
that a file has a full checkpoint's layout before it is restored. A checkpoint holds tensors and plain Python values
only, so it loads with `torch.load(..., weights_only=True)` (no arbitrary pickle). Files are written to a temporary
file in the same folder, fsynced and renamed; their sha256 is recorded so a corrupt file is detected before it is
loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mbpo_cli import __version__
from mbpo_cli.engine.pack import lone_view
from mbpo_cli.engine.state import RunState

FORMAT_VERSION = 1
"""Bumped whenever the checkpoint layout changes; older checkpoints are refused with a clear error."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read or used (one-line message)."""


def capture(state: RunState, member: int = 0) -> dict[str, Any]:
    """Everything needed to continue the seed of pack index `member` of `state` bit for bit (see
    `RunState.checkpoint_state`), with the format and the version of mbpo that wrote it."""
    view = lone_view(state, state.place(member))
    return {"format": FORMAT_VERSION, "version": __version__, **view.checkpoint_state()}


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
    return state.load_checkpoint_state(payload)


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


def policy_payload(state: RunState, eval_return: float, member: int = 0) -> dict[str, Any]:
    """A small file with the acting network only (the actor, or DQN's Q network) of the seed of pack index `member`:
    the best-evaluation policy."""
    place = state.place(member)
    return {
        "format": FORMAT_VERSION,
        "version": __version__,
        "config": state.member_config(place).to_dict(),
        "env_step": state.env_step,
        "eval_return": eval_return,
        "policy": state.seed_agent(place).policy.state_dict(),
    }
