"""`mbpo eval`: a run's policy from a checkpoint over seeded episodes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mbpo_cli.cli import common
from mbpo_cli.cli.common import Globals, JsonOpt, OverwriteOpt, emit_json, handled, registry_of

if TYPE_CHECKING:
    from mbpo_cli.runs.video import Attempt


def show_attempt(attempt: Attempt) -> None:
    """--debug: how a video child process ended, and everything it wrote on stderr."""
    common.err.print(f"--video: the {attempt.backend} child process {attempt.ended}; its stderr:", markup=False,
                     highlight=False, soft_wrap=True)
    common.err.print(attempt.stderr.rstrip() or "(nothing)", markup=False, highlight=False, soft_wrap=True)


def eval_run(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="latest, best, or an env step.")] = "latest",
    episodes: Annotated[int, typer.Option("--episodes", help="Number of episodes.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Episode i resets the env with seed + i.")] = 0,
    stochastic: Annotated[bool, typer.Option("--stochastic", help="Sample actions (seeded) instead of the mean.")]
    = False,
    video: Annotated[Path | None, typer.Option("--video", help="Film the first episode into FILE.mp4 (needs a "
                                               "MuJoCo rendering backend and imageio[ffmpeg]; its folder must "
                                               "exist).")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a run's policy from a checkpoint over seeded episodes and record the result in the registry.

    The same checkpoint, seed and mode give the same returns.

    Examples:

        mbpo eval 3f9a1c2e --episodes 10

        mbpo eval 3f9a1c2e --checkpoint best --seed 100 --json

        mbpo eval 3f9a1c2e --checkpoint 50000 --stochastic --video hopper.mp4
    """
    from mbpo_cli.runs import evaluation, outputs
    from mbpo_cli.runs.policy import EvalError, load_policy
    from mbpo_cli.runs.video import check_video_path, record_video

    with handled(ctx):
        if episodes < 1:
            raise EvalError(f"--episodes: must be at least 1, got {episodes}")
        if seed < 0:
            raise EvalError(f"--seed: must be >= 0, got {seed}")
        if video is not None:
            check_video_path(video)
        film_file = None if video is None else outputs.check_file("--video", video, ctx.obj.runs_dir, overwrite)
        registry = registry_of(ctx, run)
        info = registry.get_run(run)
        policy = load_policy(registry, info, ctx.obj.runs_dir, checkpoint)
        deterministic = not stochastic
        # the video first: a missing encoder or rendering backend must fail before anything is recorded
        debug = isinstance(ctx.obj, Globals) and ctx.obj.debug
        film = None
        if film_file is not None:
            with film_file.writing() as partial:
                film = record_video(partial, policy, seed, deterministic, on_attempt=show_attempt if debug else None)
        result = evaluation.run_episodes(policy, episodes, seed, deterministic)
        recorded = evaluation.record_evaluation(registry, policy, result, seed, deterministic)
        data = {
            "evaluation_id": recorded.id, "evaluation_number": recorded.number,
            "run_id": info.id, "run_name": info.name, "checkpoint": str(policy.label),
            "checkpoint_step": policy.checkpoint.step, "checkpoint_path": str(policy.file),
            "episodes": episodes, "seed": seed, "deterministic": deterministic,
            "returns": result.returns, "lengths": result.lengths,
            "mean": result.mean, "std": result.std, "min": result.min, "max": result.max,
            "video": None if film is None else {"path": str(video), **film},
        }
        if as_json:
            emit_json(data)
            return
        mode = "mean action" if deterministic else "sampled actions"
        table = Table(title=f"{info.name}: {policy.label} ({mode})")
        for column in ("episode", "reset seed", "return", "length"):
            table.add_column(column, justify="right")
        for i, (ret, length) in enumerate(zip(result.returns, result.lengths, strict=True)):
            table.add_row(str(i + 1), str(seed + i), f"{ret:,.2f}", f"{length:,}")
        table.add_section()
        for label, value in (("mean", result.mean), ("std", result.std), ("min", result.min), ("max", result.max)):
            table.add_row(label, "", f"{value:,.2f}", "")
        common.out.print(table)
        common.out.print(f"recorded evaluation {recorded.number} of run {info.id} "
                         f"({episodes} episode{'' if episodes == 1 else 's'})")
        if film is not None:
            common.out.print(f"video: {video} ({film['frames']} frames at {film['fps']} fps, {film['backend']}; "
                             f"return {film['return']:,.2f})")

