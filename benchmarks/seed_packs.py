"""How the per-seed cost of MBPO's two arithmetic-heavy steps falls with the pack's size S, at Hopper's shapes.

Usage: `python benchmarks/seed_packs.py [THREADS]` (default 2). Prints the machine's matmul floor, then for S = 1, 2,
4, 8 the median milliseconds of one SAC update (batch 256, 2 x 256) and one ensemble training minibatch (7 x 4 x 200,
256 per member) of a pack of S seeds, whole and per seed, and the SAC update's per-seed time against its arithmetic
at the floor (about 0.57 GFLOP per update: the "x floor" column).
"""

from __future__ import annotations

import sys

import torch

from mbpo_cli.agents.base import pack_agents
from mbpo_cli.agents.factory import make_agent
from mbpo_cli.bench.timing import matmul_floor, measure
from mbpo_cli.config.load import resolve_config
from mbpo_cli.models.ensemble import GaussianEnsemble, make_model_optimizer
from mbpo_cli.nn.batch import Batch

OBS, ACT, BATCH = 11, 3, 256
SAC_UPDATE_GFLOP = 2 * BATCH * 1.114e6 / 1e9
"""Multiply-adds of one SAC update per sample (actor, twin critics and target critics forward and backward), times
two, times the batch: the arithmetic that the floor's GFLOP/s would do in the least time."""


def update_ms(seeds: int, repeats: int) -> float:
    config = resolve_config(preset="hopper")
    torch.manual_seed(0)
    agent = pack_agents([make_agent(config, OBS, ACT) for _ in range(seeds)])
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(seeds, BATCH, OBS, generator=gen), torch.rand(seeds, BATCH, ACT, generator=gen) * 2 - 1,
                  torch.randn(seeds, BATCH, generator=gen), torch.randn(seeds, BATCH, OBS, generator=gen),
                  torch.zeros(seeds, BATCH))
    times = measure(lambda: agent.update(batch, [gen] * seeds), torch.device("cpu"), repeats, warmup=10)
    return sorted(times)[len(times) // 2]


def model_step_ms(seeds: int, repeats: int) -> float:
    config = resolve_config(preset="hopper")
    torch.manual_seed(0)
    model = GaussianEnsemble.pack([GaussianEnsemble(OBS, ACT, config.model) for _ in range(seeds)])
    optimizer = make_model_optimizer(model)
    e, b = seeds * config.model.ensemble_size, config.model.batch_size
    x, y = torch.randn(e, b, OBS + ACT), torch.randn(e, b, OBS + 1)
    times = measure(lambda: model.train_step(optimizer, x, y), torch.device("cpu"), repeats, warmup=5)
    return sorted(times)[len(times) // 2]


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    floor = matmul_floor(torch.device("cpu"))
    at_floor = SAC_UPDATE_GFLOP / floor.gflops * 1000.0
    print(f"matmul floor {floor.gflops:.1f} GFLOP/s ({threads} threads, torch {torch.__version__}); one SAC update at "
          f"the floor: {at_floor:.2f} ms")
    print("| S | SAC update ms | per seed | x floor | model step ms | per seed |")
    print("|---|---|---|---|---|---|")
    for seeds in (1, 2, 4, 8):
        update, step = update_ms(seeds, 60), model_step_ms(seeds, 30)
        print(f"| {seeds} | {update:.2f} | {update / seeds:.2f} | {update / seeds / at_floor:.2f} | {step:.2f} | "
              f"{step / seeds:.2f} |")


if __name__ == "__main__":
    main()
