"""Print a hash of everything a short seeded run learns, to check that a refactor changes no number.

Usage: `python benchmarks/fingerprint.py [STEPS] [mbpo|sac]` before and after a change; equal hashes mean
bit-identical agent and model parameters, optimizer states and replay buffers (same machine, same torch).
InvertedPendulum-v5, seed 0, one thread, the paper's preset with 2,000 rollouts per retrain.
"""

from __future__ import annotations

import hashlib
import sys

import torch

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.events import EpochEvent, Event
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import build_run


def _add(digest: hashlib._Hash, tensors: dict[str, object]) -> None:
    for key in sorted(tensors):
        value = tensors[key]
        if isinstance(value, torch.Tensor):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    algo = sys.argv[2] if len(sys.argv) > 2 else "mbpo"
    config = resolve_config(preset="inverted_pendulum", steps=steps, seed=0, algo=algo,
                            overrides=["train.device=cpu", "rollout.batch_size=2000", "train.threads=1"])
    state = build_run(config)
    evals: list[float] = []

    def record(event: Event) -> None:
        if isinstance(event, EpochEvent):
            evals.append(round(event.metrics["eval_return"], 4))

    train(state, record)
    digest = hashlib.sha256()
    _add(digest, state.agent.state_dict())
    for name, optimizer in sorted(state.agent.optimizers().items()):
        for index, slot in sorted(optimizer.state_dict()["state"].items()):
            _add(digest, {f"{name}.{index}.{k}": v for k, v in slot.items()})
    if state.model is not None and state.model_optimizer is not None:
        _add(digest, state.model.state_dict())
        for index, slot in state.model_optimizer.state_dict()["state"].items():
            _add(digest, {f"model.{index}.{k}": v for k, v in slot.items()})
    _add(digest, {f"real.{i}": t for i, t in enumerate(state.lone.real_buffer.ordered())})
    if state.lone.model_buffer is not None:
        _add(digest, {f"model_buffer.{i}": t for i, t in enumerate(state.lone.model_buffer.ordered())})
    print(algo, steps, digest.hexdigest(), evals)


if __name__ == "__main__":
    main()
