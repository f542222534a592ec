"""`mbpo train` and `mbpo resume`."""

from __future__ import annotations

from typing import Annotated

import typer

from mbpo_cli.api.run_config import check_device, check_optional_packages
from mbpo_cli.api.training import IfExists, if_exists_choice, start_training
from mbpo_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    EnvOpt,
    JsonOpt,
    PresetOpt,
    SetOpt,
    build_train_config,
    emit_yaml,
    finish,
    finish_pack,
    handled,
    note_renamed,
    open_registry,
    registry_of,
)
from mbpo_cli.cli.display import PackProgress, RichReporter
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.runs.reporting import Reporter, SilentReporter
from mbpo_cli.runs.resume import pack_runs, resume_pack, resume_run
from mbpo_cli.runs.start import RunMeta, check_pack_memory, command_line, start_pack
from mbpo_cli.runs.wandb_tracking import wandb_module

TrackOpt = Annotated[bool | None, typer.Option("--track/--no-track", help="Log each epoch's metrics, the config and "
                                               "the run's group to Weights & Biases as it trains (train.track; "
                                               "project $WANDB_PROJECT, default mbpo; WANDB_MODE=offline keeps it "
                                               "on disk; needs: pip install 'mbpo-cli[wandb]').")]


def train(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    set_: SetOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (train.seed).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Train this many seeds at once in one process (a "
                                       "pack: seeds --seed to --seed + N - 1, each its own run, in one group).")]
    = 1,
    steps: Annotated[int | None, typer.Option("--steps", help="Total real env steps (train.steps).")] = None,
    device: DeviceOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="A unique run name (default: derived; with --seeds, "
                                             "each run's is <name>-s<seed>).")] = None,
    algo: Annotated[str | None, typer.Option("--algo", help="mbpo; model-free (the base agent without a model, "
                                             "G=1 unless set); sac (SAC without a model, G=1 unless set); or dhmbpo "
                                             "(Double Horizon MBPO, its `dhmbpo` settings).")]
    = None,
    tensorboard: Annotated[bool | None, typer.Option("--tensorboard/--no-tensorboard", help="Write TensorBoard event "
                                                     "files under the run folder as it trains (train.tensorboard; "
                                                     "needs: pip install 'mbpo-cli[tensorboard]').")] = None,
    track: TrackOpt = None,
    if_exists: Annotated[str, typer.Option("--if-exists", help="When a run with --name exists: error, or resume "
                                           "it from its last checkpoint (a requeued or retried job; a finished run "
                                           "is left as it is). The run must be asked for as recorded, but that a "
                                           "larger --steps extends it and --device may differ; any other change is "
                                           "refused.")] = "error",
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config as YAML (what "
                                               "--config accepts) and exit: no run, nothing written.")] = False,
    as_json: JsonOpt = False,
    group: Annotated[str | None, typer.Option("--group", hidden=True, help="Registry group (used by ablate).")]
    = None,
    variant: Annotated[str | None, typer.Option("--variant", hidden=True, help="Variant name (used by ablate).")]
    = None,
) -> None:
    """Train a run and record it in the registry.

    Exit status: 0 when the run finished; 130 / 143 when Ctrl-C / SIGTERM stopped it (the first after the current
    step, with a checkpoint; a second at once, keeping the last checkpoint); 75 when the registry could not be
    reached for $MBPO_REGISTRY_OUTAGE_SECONDS (default 1800; the run trains on meanwhile, then stops with a
    checkpoint, and `mbpo resume` records what it kept); 2 for bad input; 1 for an internal failure.

    Examples:

        mbpo train --preset inverted_pendulum --steps 3000

        mbpo train --preset hopper --seed 1 --set rollout.batch_size=50000

        mbpo train --preset hopper --seeds 5             # seeds 0-4 in one process, five runs in one group

        mbpo train --preset hopper --algo sac            # the SAC baseline (G=1)

        mbpo train --preset hopper --algo dhmbpo --steps 30000   # Double Horizon MBPO

        mbpo train --preset inverted_pendulum --set agent.name=td3    # MBPO with TD3 as its agent

        mbpo train --preset cartpole --algo model-free   # DQN alone (G=1)

        mbpo train --env Pendulum-v1 --steps 5000 --json

        mbpo train --preset inverted_pendulum --tensorboard   # then: tensorboard --logdir runs

        mbpo train --preset hopper --track               # W&B (project $WANDB_PROJECT, default mbpo)

        mbpo train --preset hopper --name hopper-s0 --if-exists resume   # safe to requeue
    """
    with handled(ctx):
        choice = if_exists_choice(if_exists, "--if-exists")
        if choice is IfExists.RESUME and name is None:
            raise ConfigError("--if-exists resume needs --name (the run to find)")
        if choice is IfExists.RESUME and seeds > 1:
            raise ConfigError("--if-exists resume continues one run; continue a pack with: mbpo resume RUN")
        resolved = build_train_config(preset, config, env, set_, seed=seed, steps=steps, device=device, algo=algo,
                                      tensorboard=tensorboard, track=track)
        cfg = resolved.config
        if print_config:
            emit_yaml(cfg.to_dict())
            return
        note_renamed(name, "run name")
        check_optional_packages(cfg)  # a missing package fails before the registry is opened
        meta = RunMeta(preset=resolved.preset, name=name, command=command_line(), group=group, variant=variant)
        if seeds > 1:
            check_pack_memory(cfg, seeds)  # before the registry is opened: what cannot pack, what would not fit
            pack = PackProgress(seeds)
            reporters: list[Reporter] = [SilentReporter() if as_json else pack.reporter(i) for i in range(seeds)]
            first = cfg.train.seed
            outcomes = start_pack(cfg, meta, list(range(first, first + seeds)), open_registry(ctx), ctx.obj.runs_dir,
                                  reporters)
            finish_pack(outcomes, ctx, as_json)
            return
        registry = open_registry(ctx)
        reporter: Reporter = SilentReporter() if as_json else RichReporter()
        outcome = start_training(cfg, meta, registry, ctx.obj.runs_dir, reporter, choice)
        finish(outcome, ctx, as_json)


def resume(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    steps: Annotated[int | None, typer.Option("--steps", help="New total of env steps (extends a run).")] = None,
    device: DeviceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Accept a changed config (recorded).")] = False,
    track: TrackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a run from its newest good checkpoint: same id, same curves, same registry rows. A run trained in a
    pack (`train --seeds`) continues with its pack, every seed that has not failed.

    What the run kept through a registry outage (its folder's registry-pending.jsonl) is recorded first. Exit status
    as for `mbpo train`.

    Examples:

        mbpo resume 3f9a1c2e

        mbpo resume hopper-mbpo-s0-3f9a1c2e --steps 200000
    """
    with handled(ctx):
        if device is not None:
            check_device(device)
        if track:
            wandb_module("train.track")
        registry = registry_of(ctx, run)
        pack = pack_runs(ctx.obj.runs_dir, registry.get_run(run))
        if len(pack) > 1:

            def reporters(n: int) -> list[Reporter]:
                shown = PackProgress(n)
                return [SilentReporter() if as_json else shown.reporter(i) for i in range(n)]

            outcomes = resume_pack(registry, ctx.obj.runs_dir, pack, reporters, steps=steps, device=device,
                                   force=force, track=track)
            finish_pack(outcomes, ctx, as_json)
            return
        reporter: Reporter = SilentReporter() if as_json else RichReporter()
        outcome = resume_run(registry, ctx.obj.runs_dir, run, reporter, steps=steps, device=device, force=force,
                             track=track)
        finish(outcome, ctx, as_json)

