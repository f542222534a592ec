"""Checkpoint size and save/load time for a preset at given real-step counts (buffers filled to the sizes a
real run has there: the real buffer holds every real step, the model buffer its scheduled capacity).

    python benchmarks/checkpoint_size.py --preset hopper --steps 10000 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.buffer import ReplayBuffer
from mbpo_cli.engine.rollout import model_buffer_capacity, rollout_length
from mbpo_cli.engine.state import build_run
from mbpo_cli.nn.batch import Batch
from mbpo_cli.runs.checkpoint import capture, load_file, save_file


def fill(buffer: ReplayBuffer, n: int) -> None:
    """Write `n` random transitions in chunks (contents do not change the size)."""
    chunk = 500_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        obs = torch.randn(m, buffer.obs_dim)
        buffer.add(Batch(obs, torch.rand(m, buffer.act_dim), torch.randn(m), obs, torch.zeros(m)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="hopper")
    parser.add_argument("--steps", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    for steps in args.steps:
        config = resolve_config(preset=args.preset, steps=steps, device="cpu")
        state = build_run(config)
        fill(state.lone.real_buffer, steps)
        k = rollout_length(steps // config.train.epoch_length, config.rollout.schedule)
        capacity = model_buffer_capacity(k, config.rollout.batch_size, config.train.epoch_length,
                                         config.rollout.train_freq, config.rollout.retain_epochs)
        state.lone.model_buffer = ReplayBuffer(capacity, state.spec.obs_dim, state.spec.act_dim, state.device)
        fill(state.lone.model_buffer, capacity)
        state.env_step = steps
        with tempfile.TemporaryDirectory(dir=".") as folder:
            path = Path(folder) / "ckpt.pt"
            start = time.perf_counter()
            size, digest = save_file(capture(state), path)
            saved = time.perf_counter() - start
            start = time.perf_counter()
            load_file(path, digest)
            loaded = time.perf_counter() - start
        print(f"{args.preset} at {steps:,} real steps: k={k}, model buffer {capacity:,} transitions, "
              f"checkpoint {size / 2**20:,.1f} MiB, save {saved:.2f} s, verified load {loaded:.2f} s")


if __name__ == "__main__":
    main()
