"""Print a hash of everything a short seeded run learns, to check that a refactor changes no number.

Usage: `python benchmarks/fingerprint.py [STEPS] [ALGO] [AGENT] [--preset NAME] [--set KEY=VALUE ...]` before and
after a change (ALGO: mbpo, sac, model_free, dhmbpo; AGENT: sac, td3, ddpg, dqn, the preset's when left out; e.g.
`fingerprint.py 1000 sac td3` is TD3 without a model, `fingerprint.py 1000 mbpo dqn --preset cartpole` MBPO with
DQN, `fingerprint.py 1000 mbpo --set env.termination=learned` MBPO with the learned termination); equal hashes mean
bit-identical agent and model parameters, optimizer states and replay buffers (same machine, same torch). Seed 0,
one thread, the preset (InvertedPendulum-v5 by default, the paper's) with 2,000 rollouts per retrain.
"""

from __future__ import annotations

import argparse
import hashlib

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
    parser = argparse.ArgumentParser(description="hash of what a short seeded run learns")
    parser.add_argument("steps", nargs="?", type=int, default=1000)
    parser.add_argument("algo", nargs="?", default="mbpo")
    parser.add_argument("agent", nargs="?", default=None, help="the base agent (the preset's when left out)")
    parser.add_argument("--preset", default="inverted_pendulum")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="a further config override")
    args = parser.parse_args()
    steps, algo = args.steps, args.algo
    agent = [] if args.agent is None else [f"agent.name={args.agent}"]
    config = resolve_config(preset=args.preset, steps=steps, seed=0, algo=algo,
                            overrides=["train.device=cpu", "rollout.batch_size=2000", "train.threads=1", *agent,
                                       *args.sets])
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
    if state.done_model is not None and state.done_optimizer is not None:
        _add(digest, {f"done_model.{k}": v for k, v in state.done_model.state_dict().items()})
        for index, slot in state.done_optimizer.state_dict()["state"].items():
            _add(digest, {f"done_model.{index}.{k}": v for k, v in slot.items()})
    seed = state.lone
    _add(digest, {f"real.{i}": t for i, t in enumerate(seed.real_buffer.ordered())})
    if seed.model_buffer is not None:
        _add(digest, {f"model_buffer.{i}": t for i, t in enumerate(seed.model_buffer.ordered())})
    label = algo if args.agent is None else f"{algo} {args.agent}"
    print(label, steps, digest.hexdigest(), evals)


if __name__ == "__main__":
    main()
