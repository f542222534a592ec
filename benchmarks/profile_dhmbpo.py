"""Profile DHMBPO's learning burst at a preset's shapes (default: Hopper, the paper's settings): where a burst's time
goes (model retrain, joint and critic-only updates, distribution rollouts) and what one update is made of.

Usage: `python benchmarks/profile_dhmbpo.py [--preset hopper] [--threads 1] [--repeats 20] [--table]`

Everything is measured in one process on random real data of the preset's shapes (the model's and the policy's
weights untrained: the cost of an update does not depend on them). The parts are timed interleaved, in rounds, and
reported as medians; on a machine shared with other jobs read the relative split and the op counts, not the absolute
times. A burst's split is projected from the parts: `epochs` retrain epochs (each `batches_per_epoch` minibatches
and one validation scoring), the critic-only and joint updates, and the DRs of one steady-state burst.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from mbpo_cli.bench.timing import measure
from mbpo_cli.config.load import resolve_config
from mbpo_cli.engine.burst import dhmbpo_agent
from mbpo_cli.engine.double_horizon import StateBuffer, distribution_rollout
from mbpo_cli.engine.state import build_run
from mbpo_cli.models.dynamics import make_dynamics_optimizer, raw_targets
from mbpo_cli.models.dynamics_fit import train_step
from mbpo_cli.nn.batch import Batch


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` in ms over `repeats` calls, no warm-up (on the CPU)."""
    return statistics.median(measure(fn, torch.device("cpu"), repeats, warmup=0))


def op_counts(fn: Callable[[], object]) -> Counter[str]:
    """aten operators one call of `fn` launches (forward, backward, optimizer)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: Counter[str] = Counter()
    for event in prof.events():
        if event.name.startswith("aten::") and (event.cpu_parent is None or
                                                 not event.cpu_parent.name.startswith("aten::")):
            counts[event.name] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="hopper")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data", type=int, default=30_000, help="real transitions (the retrain's data)")
    parser.add_argument("--epochs", type=int, default=200, help="retrain epochs assumed for the projection")
    parser.add_argument("--table", action="store_true", help="also print the profiler's table of one update")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = resolve_config(preset=args.preset, algo="dhmbpo", overrides=["train.device=cpu"])
    state = build_run(config)
    cfg, spec = config.dhmbpo, state.spec
    agent = dhmbpo_agent(state)
    assert state.double_horizon is not None and agent.dynamics is not None
    model = state.double_horizon.model
    g = torch.Generator().manual_seed(0)
    n = args.data
    obs = torch.randn(n, spec.obs_dim, generator=g)
    act = torch.rand(n, spec.act_dim, generator=g) * 2 - 1
    next_obs = obs + 0.1 * torch.randn(n, spec.obs_dim, generator=g)
    real = state.lone.real_buffer
    real.add(Batch(obs, act, torch.randn(n, generator=g), next_obs, torch.zeros(n)))
    model.set_normalizers(obs, raw_targets(obs, torch.randn(n, generator=g), next_obs))
    buffer = StateBuffer(cfg.distribution_buffer, spec.obs_dim, state.device)
    distribution_rollout(agent, agent.dynamics, real, model, buffer, cfg.distribution_states, g)
    starts = buffer.sample(cfg.batch_size, g)

    m = cfg.model
    optimizer = make_dynamics_optimizer(model)
    x = model.inputs(obs[: m.batch_size], act[: m.batch_size])
    y = model.targets(raw_targets(obs, torch.randn(n, generator=g), next_obs))[: m.batch_size]
    weights = torch.ones(model.members, m.batch_size)
    x_val = model.inputs(obs[: m.validation_batches * m.batch_size], act[: m.validation_batches * m.batch_size])
    y_val = model.targets(raw_targets(obs, torch.randn(n, generator=g), next_obs))[: x_val.shape[0]]

    def model_minibatch() -> None:
        train_step(model, optimizer, x, y.expand(model.members, -1, -1), weights, g)

    parts: dict[str, Callable[[], object]] = {
        "joint update": lambda: agent.learn(starts, g, critic_only=False),
        "critic-only update": lambda: agent.learn(starts, g, critic_only=True),
        "DR (one round)": lambda: distribution_rollout(agent, agent.dynamics, real, model, buffer, 1, g),
        "model minibatch": model_minibatch,
        "model validation": lambda: model.scores(x_val, y_val),
    }
    for fn in parts.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, fn in parts.items():
            times[name].append(median_ms(fn, 1))
    ms = {name: statistics.median(values) for name, values in times.items()}
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    print(f"{args.preset} (obs {spec.obs_dim}, act {spec.act_dim}), {args.threads} thread(s), load average {load}")
    for name, value in ms.items():
        print(f"  {name:20s} {value:9.2f} ms")

    rounds = -(-cfg.distribution_states // (cfg.distribution_starts * (cfg.distribution_horizon + 1)))
    updates = cfg.joint_updates(first=False)
    burst = {
        "model retrain": args.epochs * (m.batches_per_epoch * ms["model minibatch"] + ms["model validation"]),
        "joint updates": updates * ms["joint update"],
        "critic-only updates": cfg.warmup_updates * ms["critic-only update"],
        "DRs": (updates // cfg.distribution_every + 1) * rounds * ms["DR (one round)"],
    }
    total = sum(burst.values())
    print(f"a steady-state burst ({args.epochs} retrain epochs, {updates} joint and {cfg.warmup_updates} "
          f"critic-only updates, {updates // cfg.distribution_every + 1} DRs), projected:")
    for name, value in burst.items():
        print(f"  {name:20s} {100 * value / total:5.1f} %")

    for name in ("critic-only update", "DR (one round)", "model minibatch", "model validation"):
        print(f"{name}: {sum(op_counts(parts[name]).values())} aten operators (top level)")
    joint = op_counts(parts["joint update"])
    print(f"joint update: {sum(joint.values())} aten operators (top level), most frequent:")
    for name, count in joint.most_common(12):
        print(f"  {count:5d}  {name}")
    if args.table:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            parts["joint update"]()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
