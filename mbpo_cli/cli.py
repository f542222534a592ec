"""The `mbpo` command line: a thin layer over the runner, the registry and the reports."""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mbpo_cli import __version__
from mbpo_cli.checkpoint import CheckpointError
from mbpo_cli.config import Config, ConfigError, EnvConfig, base_preset, preset_names, resolve_config
from mbpo_cli.display import RichReporter, summary_table
from mbpo_cli.engine import NumericalError, resolve_device
from mbpo_cli.envs import EnvError, env_spec, make_env
from mbpo_cli.registry import URL_ENV_VAR, Registry, RegistryError, RunInfo
from mbpo_cli.runner import (
    Outcome,
    Reporter,
    RunError,
    RunMeta,
    SilentReporter,
    StopSignals,
    command_line,
    is_locked,
    resume_run,
    run_dir,
    start_run,
)

app = typer.Typer(
    name="mbpo",
    help="Model-Based Policy Optimization (Janner et al. 2019): train, resume, inspect and compare runs.\n\n"
    "Examples: `mbpo train --preset hopper --seed 1`, `mbpo runs list`, `mbpo resume 3f9a1c2e`",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
runs_app = typer.Typer(
    help="List, show and delete runs in the registry.\n\n"
    "Examples: `mbpo runs list --status finished`, `mbpo runs show 3f9a1c2e --json`",
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True)

USER_ERRORS = (ConfigError, EnvError, RegistryError, RunError, CheckpointError)


@dataclass
class Globals:
    """Options shared by every command."""

    runs_dir: Path
    debug: bool


def _version(value: bool) -> None:
    if value:
        print(f"mbpo {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", envvar="MBPO_RUNS_DIR",
                                           help="Where the registry and run folders live.")] = Path("runs"),
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Model-Based Policy Optimization as one command.

    Every run is recorded in a registry (SQLite at RUNS_DIR/registry.db, or MBPO_REGISTRY_URL).
    """
    ctx.obj = Globals(runs_dir=runs_dir, debug=debug)


@contextmanager
def handled(ctx: typer.Context) -> Iterator[None]:
    """Bad input: one line on stderr, exit 2. Internal failure: one line, exit 1. Tracebacks with --debug."""
    debug = ctx.obj.debug if isinstance(ctx.obj, Globals) else False
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except NumericalError as error:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/] numerical failure: {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as error:
        if debug:
            traceback.print_exc()
        first = str(error).strip().splitlines()
        err.print(f"[red]error:[/] {type(error).__name__}: {escape(first[0]) if first else ''} (rerun with --debug "
                  "for the traceback)", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def open_registry(ctx: typer.Context) -> Registry:
    """The registry of the chosen runs directory."""
    return Registry.open(ctx.obj.runs_dir)


def existing_registry(ctx: typer.Context) -> Registry | None:
    """The registry if it exists; None (and nothing created) when the default SQLite file is not there yet."""
    if not os.environ.get(URL_ENV_VAR) and not (ctx.obj.runs_dir / "registry.db").is_file():
        return None
    return open_registry(ctx)


def registry_of(ctx: typer.Context, ref: str) -> Registry:
    """The existing registry for a command about run `ref`; a missing registry means no such run."""
    registry = existing_registry(ctx)
    if registry is None:
        raise RegistryError(f"no run {ref!r}: there is no registry at {ctx.obj.runs_dir / 'registry.db'}")
    return registry


def _summary(outcome: Outcome, runs_dir: Path) -> dict[str, Any]:
    run = outcome.run
    metrics = outcome.last_metrics
    steps = outcome.env_steps_this_session
    return {
        "id": run.id,
        "name": run.name,
        "status": outcome.status,
        "env": run.env_id,
        "algo": run.algo,
        "seed": run.seed,
        "env_steps": run.env_steps,
        "final_eval_return": metrics.get("eval_return"),
        "best_eval_return": outcome.best_eval,
        "wall_seconds": round(outcome.wall_seconds, 2),
        "steps_per_second": round(steps / max(metrics.get("wall_seconds", outcome.wall_seconds), 1e-9), 2)
        if steps else 0.0,
        "run_dir": str(run_dir(runs_dir, run.id)),
    }


def _finish(outcome: Outcome, ctx: typer.Context, as_json: bool) -> None:
    summary = _summary(outcome, ctx.obj.runs_dir)
    if as_json:
        print(json.dumps(summary))
    else:
        out.print(summary_table(summary))
        if outcome.status == "interrupted":
            out.print(f"Interrupted at env step {outcome.run.env_steps:,}. Continue with: "
                      f"[bold]mbpo resume {outcome.run.id}[/]")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


# ---------------------------------------------------------------------------------------------
# train / resume
# ---------------------------------------------------------------------------------------------

PresetOpt = Annotated[str | None, typer.Option("--preset", help="A bundled preset: " + ", ".join(preset_names()))]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A YAML config file (may name a `base:` preset).")]
EnvOpt = Annotated[str | None, typer.Option("--env", help="Any gymnasium env id with a Box action space.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set model.ensemble_size=5.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and no progress display.")]


def build_train_config(preset: str | None, config: Path | None, env: str | None, sets: list[str] | None,
                       seed: int | None, steps: int | None, device: str | None, algo: str | None) -> Config:
    """Resolve the config and check the environment before anything is written."""
    dims = None
    if env is not None and preset is None and config is None:
        probe = make_env(EnvConfig(id=env))
        spec = env_spec(probe)
        probe.close()
        dims = (spec.obs_dim, spec.act_dim)
    resolved = resolve_config(preset=preset, config_file=config, env_id=env, env_dims=dims, overrides=sets,
                              seed=seed, steps=steps, device=device, algo=algo)
    check_device(resolved.train.device)
    make_env(resolved.env).close()
    return resolved


def check_device(name: str) -> None:
    """A ConfigError (exit 2) for a device this machine does not have."""
    try:
        resolve_device(name)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(f"--device {name}: {error}") from None


@app.command()
def train(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    set_: SetOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (train.seed).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Total real env steps (train.steps).")] = None,
    device: DeviceOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="A unique run name (default: derived).")] = None,
    algo: Annotated[str | None, typer.Option("--algo", help="mbpo, or sac (SAC only, G=1 unless set).")] = None,
    as_json: JsonOpt = False,
    group: Annotated[str | None, typer.Option("--group", hidden=True, help="Registry group (used by ablate).")]
    = None,
    variant: Annotated[str | None, typer.Option("--variant", hidden=True, help="Variant name (used by ablate).")]
    = None,
) -> None:
    """Train a run and record it in the registry.

    Examples:

        mbpo train --preset inverted_pendulum --steps 3000

        mbpo train --preset hopper --seed 1 --set rollout.batch_size=50000

        mbpo train --preset hopper --algo sac            # the SAC baseline (G=1)

        mbpo train --env Pendulum-v1 --steps 5000 --json
    """
    with handled(ctx):
        if algo is not None and algo not in ("mbpo", "sac"):
            raise ConfigError(f"--algo: expected mbpo or sac, got {algo!r}")
        cfg = build_train_config(preset, config, env, set_, seed, steps, device, algo)
        registry = open_registry(ctx)
        reporter: Reporter = SilentReporter() if as_json else RichReporter()
        if preset is None and config is not None:
            preset = base_preset(config)
        meta = RunMeta(preset=preset, name=name, command=command_line(), group=group, variant=variant)
        outcome = start_run(cfg, meta, registry, ctx.obj.runs_dir, reporter)
        _finish(outcome, ctx, as_json)


@app.command()
def resume(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    steps: Annotated[int | None, typer.Option("--steps", help="New total of env steps (extends a run).")] = None,
    device: DeviceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Accept a changed config (recorded).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue a run from its newest good checkpoint: same id, same curves, same registry rows.

    Examples:

        mbpo resume 3f9a1c2e

        mbpo resume hopper-mbpo-s0-3f9a1c2e --steps 200000
    """
    with handled(ctx):
        if device is not None:
            check_device(device)
        registry = registry_of(ctx, run)
        reporter: Reporter = SilentReporter() if as_json else RichReporter()
        outcome = resume_run(registry, ctx.obj.runs_dir, run, reporter, steps=steps, device=device, force=force)
        _finish(outcome, ctx, as_json)


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------


def _last_eval(registry: Registry, run: RunInfo) -> float | None:
    rows = registry.metrics(run.id, "eval_return")
    return rows[-1][2] if rows else None


def _run_dict(registry: Registry, run: RunInfo, runs_dir: Path) -> dict[str, Any]:
    data = run.to_dict()
    alive = run.status == "running" and is_locked(run_dir(runs_dir, run.id))
    data["status"] = "running" if alive else run.display_status
    data["last_eval_return"] = _last_eval(registry, run)
    return data


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="running, finished, interrupted or failed.")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Only runs of this preset.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first. A crashed run (stale heartbeat) shows as "interrupted (stale)".

    Example: mbpo runs list --status finished --preset hopper
    """
    with handled(ctx):
        if status is not None and status not in ("running", "finished", "interrupted", "failed"):
            raise RunError(f"--status: expected running, finished, interrupted or failed, got {status!r}")
        registry = existing_registry(ctx)
        runs = [] if registry is None else registry.list_runs(preset=preset)
        rows = [_run_dict(registry, r, ctx.obj.runs_dir) for r in runs] if registry is not None else []
        if status is not None:
            rows = [r for r in rows if r["status"].split(" ")[0] == status]
        if as_json:
            print(json.dumps(rows))
            return
        table = Table(title=f"Runs in {ctx.obj.runs_dir}")
        for column in ("id", "name", "status", "group", "algo", "env", "seed", "steps", "last eval", "created"):
            # the id stays whole on narrow terminals (it is what other commands take); the other columns give way
            table.add_column(column, no_wrap=column == "id", min_width=8 if column == "id" else None)
        for r in rows:
            last = r["last_eval_return"]
            table.add_row(r["id"], r["name"], r["status"], r["group"] or "", r["algo"], r["env_id"], str(r["seed"]),
                          f"{r['env_steps']:,}/{r['target_steps']:,}", "-" if last is None else f"{last:,.1f}",
                          r["created_at"][:19].replace("T", " "))
        out.print(table)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run: its config, evaluation curve and checkpoints.

    Example: mbpo runs show 3f9a1c2e --json
    """
    with handled(ctx):
        registry = registry_of(ctx, run)
        info = registry.get_run(run)
        data = _run_dict(registry, info, ctx.obj.runs_dir)
        data["evals"] = [{"step": s, "return": v} for s, _, v in registry.metrics(info.id, "eval_return")]
        data["checkpoints"] = [c.to_dict() for c in registry.checkpoints(info.id)]
        data["evaluations"] = [e.to_dict() for e in registry.evaluations(info.id)]
        if as_json:
            print(json.dumps(data))
            return
        table = Table(title=f"Run {info.id}", show_header=False, title_justify="left")
        table.add_column("key", style="bold")
        table.add_column("value")
        for key in ("name", "status", "group", "variant", "preset", "env_id", "algo", "seed", "device", "host",
                    "version", "git_commit", "created_at", "ended_at", "command", "error"):
            if data.get(key) is not None:
                table.add_row(key, str(data[key]))
        table.add_row("env steps", f"{info.env_steps:,} / {info.target_steps:,}")
        table.add_row("wall time", f"{info.wall_seconds:,.1f} s")
        table.add_row("run folder", str(run_dir(ctx.obj.runs_dir, info.id)))
        out.print(table)
        if data["evals"]:
            curve = Table(title="Evaluation returns")
            curve.add_column("env step", justify="right")
            curve.add_column("return", justify="right")
            for row in data["evals"]:
                curve.add_row(f"{row['step']:,}", f"{row['return']:,.1f}")
            out.print(curve)
        for ckpt in data["checkpoints"]:
            out.print(f"checkpoint [{ckpt['kind']}] step {ckpt['step']:,}: {ckpt['path']} ({ckpt['bytes']:,} bytes)")


@runs_app.command("delete")
def runs_delete(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a run's registry rows and its run folder.

    Example: mbpo runs delete 3f9a1c2e --yes
    """
    with handled(ctx):
        registry = registry_of(ctx, run)
        info = registry.get_run(run)
        folder = run_dir(ctx.obj.runs_dir, info.id)
        if is_locked(folder):
            raise RunError(f"run {info.id} is running in another process; stop it first")
        if not yes:
            if not sys.stdin.isatty():
                raise RunError("refusing to delete without confirmation: pass --yes")
            typer.confirm(f"Delete run {info.id} ({info.name}) and {folder}?", abort=True)
        registry.delete_run(info.id)
        if folder.is_dir():
            shutil.rmtree(folder)
        out.print(f"deleted run {info.id}")


# ---------------------------------------------------------------------------------------------
# eval / compare
# ---------------------------------------------------------------------------------------------


@app.command("eval")
def eval_run(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="latest, best, or an env step.")] = "latest",
    episodes: Annotated[int, typer.Option("--episodes", help="Number of episodes.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Episode i resets the env with seed + i.")] = 0,
    stochastic: Annotated[bool, typer.Option("--stochastic", help="Sample actions (seeded) instead of the mean.")]
    = False,
    video: Annotated[Path | None, typer.Option("--video", help="Film the first episode into FILE.mp4 (needs a "
                                               "MuJoCo rendering backend and imageio[ffmpeg]).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a run's policy from a checkpoint over seeded episodes and record the result in the registry.

    The same checkpoint, seed and mode give the same returns.

    Examples:

        mbpo eval 3f9a1c2e --episodes 10

        mbpo eval 3f9a1c2e --checkpoint best --seed 100 --json

        mbpo eval 3f9a1c2e --checkpoint 50000 --stochastic --video hopper.mp4
    """
    from mbpo_cli import evaluation

    with handled(ctx):
        if episodes < 1:
            raise evaluation.EvalError(f"--episodes: must be at least 1, got {episodes}")
        if seed < 0:
            raise evaluation.EvalError(f"--seed: must be >= 0, got {seed}")
        if video is not None:
            evaluation.check_video_path(video)
        registry = registry_of(ctx, run)
        info = registry.get_run(run)
        policy = evaluation.load_policy(registry, info, checkpoint)
        deterministic = not stochastic
        # the video first: a missing encoder or rendering backend must fail before anything is recorded
        film = evaluation.record_video(video, policy, seed, deterministic) if video is not None else None
        result = evaluation.run_episodes(policy, episodes, seed, deterministic)
        eval_id = evaluation.record_evaluation(registry, policy, result, seed, deterministic)
        data = {
            "evaluation_id": eval_id, "run_id": info.id, "run_name": info.name, "checkpoint": policy.label,
            "checkpoint_step": policy.checkpoint.step, "checkpoint_path": policy.checkpoint.path,
            "episodes": episodes, "seed": seed, "deterministic": deterministic,
            "returns": result.returns, "lengths": result.lengths,
            "mean": result.mean, "std": result.std, "min": result.min, "max": result.max,
            "video": None if film is None else {"path": str(video), **film},
        }
        if as_json:
            print(json.dumps(data))
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
        out.print(table)
        out.print(f"recorded evaluation {eval_id} of run {info.id} ({episodes} episodes)")
        if film is not None:
            out.print(f"video: {video} ({film['frames']} frames at {film['fps']} fps, {film['backend']}; "
                      f"return {film['return']:,.2f})")


def _fmt(value: float | None, spec: str = ",.1f", missing: str = "-") -> str:
    return missing if value is None or value != value else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _compare_tables(report: Any) -> list[Table]:  # noqa: C901 - one table after the other
    """The Rich tables of a compare report (see mbpo_cli.report for the definitions)."""

    tables = []

    def add_columns(table: Table, columns: list[str]) -> None:
        for column in columns:
            if column in ("group", "baseline"):  # a long name wraps, never loses its end
                table.add_column(column, overflow="fold")
            else:
                table.add_column(column, justify="right")

    returns = Table(title="Eval return at milestones (95% CI: bootstrap of the IQM over seeds)")
    add_columns(returns, ["group", "env step", "seeds", "mean", "IQM", "95% CI"])
    previous = None
    for row in report.returns:
        if previous is not None and row.group != previous:
            returns.add_section()
        if row.n_seeds == 0:
            ci = "no data"
        elif row.n_seeds == 1:
            ci = "n/a (1 seed)"
        else:
            ci = f"[{row.ci_low:,.1f}, {row.ci_high:,.1f}]"
        returns.add_row(escape(row.group) if row.group != previous else "", f"{row.step:,}", str(row.n_seeds),
                        _fmt(row.mean), _fmt(row.iqm), ci)
        previous = row.group
    tables.append(returns)

    pairs = {(r.baseline, r.threshold) for r in report.efficiency}
    single = len(pairs) == 1
    baseline, threshold = next(iter(pairs)) if single else (None, None)
    if single and threshold is not None:
        source = "--threshold" if report.threshold_source == "--threshold" else f"final IQM of {baseline}"
        title = escape(f"Sample efficiency: threshold {threshold:,.1f} ({source})")
    else:
        title = "Sample efficiency"
    efficiency = Table(title=title)
    columns = ["group"] + ([] if single else ["baseline", "threshold"])
    columns += ["steps to threshold", "seeds reaching", "x fewer real steps", "norm. AUC (IQM)"]
    add_columns(efficiency, columns)
    for row in report.efficiency:
        if row.threshold is None:
            steps = "n/a (no threshold)"
        elif row.steps is None:
            steps = f"not reached by {row.searched_until:,}"
        else:
            steps = f"{row.steps:,.0f}"
        if row.baseline is None:
            ratio = "n/a (no baseline)"
        elif row.group == row.baseline:
            ratio = "1.00x (baseline)"
        elif row.ratio is None:
            ratio = "-"
        else:
            ratio = f"{'> ' if row.ratio_is_lower_bound else ''}{row.ratio:.2f}x"
        reaching = "-" if row.threshold is None else f"{row.seeds_reaching}/{row.n_seeds}"
        cells = [escape(row.group)] + ([] if single else [escape(row.baseline or "-"), _fmt(row.threshold)])
        cells += [steps, reaching, ratio, _fmt(row.auc, ".3f")]
        efficiency.add_row(*cells)
    tables.append(efficiency)

    wall = Table(title="Wall-clock time (mean per run)")
    add_columns(wall, ["group", "runs", "wall time", "env steps", "env steps/s", "~wall to threshold"])
    to_threshold = {row.group: row.wall_to_threshold for row in report.efficiency}
    for row in report.wall:
        wall.add_row(escape(row.group), str(row.n_runs), _duration(row.wall_seconds), _fmt(row.env_steps, ",.0f"),
                     _fmt(row.steps_per_second, ",.1f"), _duration(to_threshold.get(row.group)))
    tables.append(wall)

    final = Table(title="Final return (IQM at each group's last common eval step) and P(improvement) over the "
                        "baseline")
    add_columns(final, ["group", "final step", "seeds", "IQM", "95% CI", "P(better than baseline)", "at step"])
    for row in report.final:
        ci = "n/a (1 seed)" if row.n_seeds < 2 else f"[{row.ci_low:,.1f}, {row.ci_high:,.1f}]"
        if row.baseline is None:
            p = "n/a (no baseline)"
        elif row.group == row.baseline:
            p = "(baseline)"
        else:
            p = _fmt(row.p_improvement, ".2f", "n/a")
        final.add_row(escape(row.group), f"{row.step:,}", str(row.n_seeds), _fmt(row.iqm), ci, p,
                      "-" if row.p_step is None else f"{row.p_step:,}")
    tables.append(final)
    return tables


@app.command()
def compare(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="Run ids, id prefixes, run names or group names.",
                                              metavar="RUN_OR_GROUP")],
    baseline: Annotated[str | None, typer.Option("--baseline", help="The baseline run or group (default: the "
                                                 "SAC-only group of the same env among the arguments).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Env steps for the returns table: 25000,50k,...")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Return to reach (default: the baseline's "
                                                    "final IQM return).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write learning curves to FILE.png or FILE.svg.")]
    = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv (run_id,group,seed,step,return).")]
    = "table",
) -> None:
    """Compare groups of seeds: returns at milestones, sample efficiency vs a baseline, wall clock, final return.

    Runs with the same config apart from the seed (and device, threads) form one group. Statistics are over
    seeds: IQM with 95% bootstrap intervals (fixed bootstrap seed: the same input gives the same output).

    Examples:

        mbpo compare hopper-seeds hopper-sac-seeds

        mbpo compare 3f9a1c2e 8b7d6e5f --baseline 1a2b3c4d --at 25k,50k,100k --plot curves.png

        mbpo compare hopper-seeds --threshold 3000 --format json
    """
    from mbpo_cli import plots
    from mbpo_cli import report as reports

    with handled(ctx):
        if fmt not in ("table", "json", "csv"):
            raise RunError(f"--format: expected table, json or csv, got {fmt!r}")
        if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
            raise RunError(f"--plot: the file must end in .png or .svg, got {str(plot)!r}")
        try:
            at_steps = reports.parse_steps(at) if at is not None else None
            registry = registry_of(ctx, refs[0])
            runs = reports.resolve_refs(registry, refs)
            base_runs = reports.resolve_refs(registry, [baseline]) if baseline is not None else None
            curves = reports.load_curves(registry, [*runs, *(base_runs or [])])
            report = reports.build_report(runs, curves, baseline_runs=base_runs, at=at_steps, threshold=threshold)
        except reports.ReportError as error:
            raise RunError(str(error)) from None
        curves_data = reports.plot_data(report, curves)
        if plot is not None:
            lines = {r.threshold for r in report.efficiency}
            line = next(iter(lines)) if len(lines) == 1 else None
            envs = ", ".join(dict.fromkeys(g.env_id for g in report.groups))
            plots.plot_curves(curves_data, plot, line, f"{envs}: IQM eval return over seeds (95% bootstrap CI)")
        if fmt == "csv":
            import csv

            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["run_id", "group", "seed", "step", "return"])
            writer.writerows(reports.long_rows(report, curves))
            return
        if fmt == "json":
            data = reports.report_to_dict(report)
            data["plot"] = None if plot is None else str(plot)
            print(json.dumps(data, allow_nan=False))
            return
        for table in _compare_tables(report):
            out.print(table)
        auc = report.auc
        if auc.start == auc.start:
            out.print(f"norm. AUC: each run's mean return over env steps {auc.start:,.0f}-{auc.end:,.0f}, scaled so "
                      f"that 0 = {auc.low:,.1f} and 1 = {auc.high:,.1f} (the lowest and highest eval return of any "
                      "compared run)", highlight=False)
        for note in report.notes:
            out.print(f"note: {note}", highlight=False, markup=False)
        if plot is not None:
            out.print(f"wrote {plot}")
        if len(curves_data) <= 10:
            out.print(plots.text_plot(curves_data), highlight=False, markup=False)


# ---------------------------------------------------------------------------------------------
# ablate
# ---------------------------------------------------------------------------------------------


def _diff_table(plan: Any) -> Table:
    from mbpo_cli.ablation import describe_value

    table = Table(title=f"Variants of {plan.group}: config differences from the control")
    for column in ("variant", "key", "control", "variant value"):
        table.add_column(column, overflow="fold")
    for name, diff in plan.diffs().items():
        if not diff:
            table.add_row(escape(name), "(the full configuration)" if name == "control" else "(no change)", "", "")
            continue
        for i, (key, (a, b)) in enumerate(diff.items()):
            table.add_row(escape(name) if i == 0 else "", key, escape(describe_value(a)), escape(describe_value(b)))
        table.add_section()
    return table


def _ablation_runs_table(plan: Any, rows: list[dict[str, Any]]) -> Table:
    done = sum(1 for r in rows if str(r["status"]).startswith("finished"))
    steps = sum(r["env_steps"] for r in rows)
    total = sum(r["target_steps"] for r in rows) or 1
    table = Table(title=f"Ablation {plan.group}: {done}/{len(rows)} runs finished, {steps:,}/{total:,} env steps "
                        f"({steps / total:.0%})")
    for column in ("variant", "seed", "run", "env steps", "last eval", "status"):
        table.add_column(column, justify="right" if column in ("seed", "env steps", "last eval") else "left")
    for r in rows:
        last = r["last_eval_return"]
        table.add_row(escape(r["variant"]), str(r["seed"]), r["id"] or "-", f"{r['env_steps']:,}/{r['target_steps']:,}",
                      "-" if last is None else f"{last:,.1f}", str(r["status"]))
    return table


def _same_as_control_notes(plan: Any) -> list[str]:
    return [f"variant {name} trains exactly as the control does (a constant rollout schedule is the same "
            "whatever its epochs): seed for seed on one device its runs repeat the control's numbers"
            for name in plan.same_as_control()]


def _ablation_report(registry: Registry, plan: Any) -> tuple[Any, list[str]]:
    """The compare report of the group with the control as baseline (None and a note when not possible)."""
    from mbpo_cli import report as reports

    runs = registry.runs_in_group(plan.group)
    control = [r for r in runs if r.variant == "control"]
    try:
        curves = reports.load_curves(registry, runs)
        usable = [r for r in control if len(curves[r.id][0]) > 0]
        return reports.build_report(runs, curves, baseline_runs=usable or None), []
    except reports.ReportError as error:
        return None, [f"no compare report: {error}"]


@app.command()
def ablate(  # noqa: C901 - options, then plan, then run, then report
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Variant: SAC on real data with the same G.")] = False,
    rollout_length: Annotated[list[int] | None, typer.Option("--rollout-length", help="Variant: fixed rollout "
                                                              "length K (repeatable).")] = None,
    from_initial_states: Annotated[bool, typer.Option("--from-initial-states", help="Variant: branch from reset "
                                                      "states.")] = False,
    real_ratio: Annotated[list[float] | None, typer.Option("--real-ratio", help="Variant: real-data fraction R "
                                                           "in [0, 1] (repeatable).")] = None,
    ensemble_size: Annotated[list[int] | None, typer.Option("--ensemble-size", help="Variant: N members, elites "
                                                            "min(elites, N) (repeatable; 1 = single model).")]
    = None,
    deterministic_model: Annotated[bool, typer.Option("--deterministic-model", help="Variant: deterministic "
                                                      "model.")] = False,
    no_elites: Annotated[bool, typer.Option("--no-elites", help="Variant: roll out with every member.")] = False,
    updates_per_step: Annotated[list[int] | None, typer.Option("--updates-per-step", help="Variant: G "
                                                               "(repeatable).")] = None,
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Custom variant NAME:KEY=VALUE[,KEY=VALUE"
                                                      "...] (repeatable).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per variant.")] = 3,
    start_seed: Annotated[int, typer.Option("--start-seed", help="First seed.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", help="Runs at a time (each gets cores // jobs threads).")] = 1,
    steps: Annotated[int | None, typer.Option("--steps", help="Total real env steps per run.")] = None,
    device: DeviceOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Group name (default: <preset>-ablation-<hash>).")]
    = None,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run and write nothing.")] = False,
    resume_group: Annotated[str | None, typer.Option("--resume", help="Continue the unfinished runs of an "
                                                     "ablation group.", metavar="GROUP")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the MBPO paper's ablations: the full configuration ("control") and one variant per flag, across seeds.

    Every variant x seed is a run in one registry group (kind ablation); runs execute as separate
    `mbpo train` processes, --jobs at a time. Ctrl-C interrupts them all (each checkpoints); continue with
    `mbpo ablate --resume GROUP`. At the end: the compare report with the control as the baseline.

    Examples:

        mbpo ablate --preset hopper --no-model --rollout-length 5 --seeds 3 --jobs 3

        mbpo ablate --preset hopper --real-ratio 0.5 --variant wide:model.hidden=400,sac.hidden=512 --dry-run

        mbpo ablate --resume hopper-ablation-3f9a1c
    """
    from mbpo_cli import ablation
    from mbpo_cli import report as reports

    with handled(ctx):
        flags = ablation.VariantFlags(
            no_model=no_model, rollout_lengths=rollout_length or (), from_initial_states=from_initial_states,
            real_ratios=real_ratio or (), ensemble_sizes=ensemble_size or (), deterministic_model=deterministic_model,
            no_elites=no_elites, updates_per_step=updates_per_step or (), custom=variant or ())
        if jobs < 1:
            raise ConfigError(f"--jobs: must be at least 1, got {jobs}")
        runs_dir: Path = ctx.obj.runs_dir
        if resume_group is not None:
            given = [preset, config, env, steps, device, name, set_, dry_run] + [f for f in vars(flags).values() if f]
            if any(x is not None and x is not False for x in given):
                raise ConfigError("--resume GROUP takes the plan from the group: only --jobs and --json go with it "
                                  "(no --dry-run)")
            registry = registry_of(ctx, resume_group)
            plan = ablation.load_plan(registry, resume_group)
        else:
            if seeds < 1:
                raise ConfigError(f"--seeds: must be at least 1, got {seeds}")
            if start_seed < 0:
                raise ConfigError(f"--start-seed: must be >= 0, got {start_seed}")
            control = build_train_config(preset, config, env, set_, None, steps, device, None)
            source = {"preset": preset, "config": None if config is None else str(config.resolve()), "env": env,
                      "sets": list(set_ or []), "steps": steps, "device": device}
            plan = ablation.build_plan(control, source, flags, range(start_seed, start_seed + seeds), name)
            if dry_run:
                data = plan.to_dict()
                data["diffs"] = {k: {key: list(v) for key, v in d.items()} for k, d in plan.diffs().items()}
                data["same_as_control"] = plan.same_as_control()
                if as_json:
                    print(json.dumps(data))
                    return
                out.print(f"Ablation plan {plan.group} (dry run: nothing is run or written)")
                out.print(_diff_table(plan))
                threads = ablation.threads_per_job(jobs)
                out.print(f"{len(plan.variants)} variants x {len(plan.seeds)} seeds ({', '.join(map(str, plan.seeds))})"
                          f" = {len(plan.variants) * len(plan.seeds)} runs, {plan.total_env_steps():,} env steps in "
                          f"total; --jobs {jobs} with {threads} thread{'s' if threads > 1 else ''} each",
                          highlight=False)
                for note in _same_as_control_notes(plan):
                    out.print(f"note: {note}", highlight=False, markup=False)
                return
            existing = existing_registry(ctx)
            if existing is not None and existing.group_info(plan.group) is not None:
                raise RegistryError(f"group {plan.group!r} already exists; continue it with: mbpo ablate --resume "
                                    f"{plan.group}, or choose another --name")
            registry = open_registry(ctx)
            ablation.create_group(registry, plan)
        ablation.write_variant_configs(plan, runs_dir)
        tasks = ablation.plan_tasks(plan, registry, runs_dir)
        executor = ablation.LocalProcessExecutor()
        with StopSignals() as stop:
            if as_json:
                signum = ablation.execute(plan, tasks, registry, runs_dir, executor, jobs, stop=stop)
            else:
                from rich.live import Live

                with Live(_ablation_runs_table(plan, ablation.run_rows(plan, tasks, registry)), console=out,
                          refresh_per_second=2) as live:
                    def tick(current: list[Any]) -> None:
                        live.update(_ablation_runs_table(plan, ablation.run_rows(plan, current, registry)))

                    signum = ablation.execute(plan, tasks, registry, runs_dir, executor, jobs, on_tick=tick,
                                              stop=stop)
                out.print()
        rows = ablation.run_rows(plan, tasks, registry)
        report, notes = (None, []) if signum is not None else _ablation_report(registry, plan)
        notes += _same_as_control_notes(plan)
        failed = [r for r in rows if str(r["status"]).startswith("failed")]
        busy = [r for r in rows if r["status"] == "busy"]
        if as_json:
            data = {"group": plan.group, "interrupted": signum is not None,
                    "runs": [{k: r[k] for k in ("id", "variant", "seed", "status", "env_steps", "last_eval_return")}
                             for r in rows],
                    "variants": [{"name": v.name, "overrides": list(v.overrides)} for v in plan.variants],
                    "compare": None if report is None else reports.report_to_dict(report), "notes": notes}
            print(json.dumps(data))
        else:
            if report is not None:
                for table in _compare_tables(report):
                    out.print(table)
                for note in report.notes:
                    out.print(f"note: {note}", highlight=False, markup=False)
            out.print(_diff_table(plan))
            for note in notes:
                out.print(f"note: {note}", highlight=False, markup=False)
        for r in failed:
            err.print(f"run {r['id'] or '-'} ({r['variant']}, seed {r['seed']}) failed; its log is under "
                      f"{ablation.ablation_dir(runs_dir, plan.group) / 'logs'}", highlight=False, soft_wrap=True)
        for r in busy:
            err.print(f"run {r['id']} ({r['variant']}, seed {r['seed']}) is running in another process: not started",
                      highlight=False, soft_wrap=True)
        if signum is not None:
            err.print(f"interrupted: continue with: mbpo --runs-dir {runs_dir} ablate --resume {plan.group}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(128 + signum)
        if failed or busy:
            err.print(f"continue the unfinished runs with: mbpo --runs-dir {runs_dir} ablate --resume {plan.group}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------


@app.command()
def bench(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option("--preset", help="Preset whose shapes are timed.")] = "hopper",
    device: DeviceOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="Real steps of the end-to-end segment (after exploration).")]
    = 500,
    samples: Annotated[int, typer.Option("--samples", help="Real transitions the model retrain is timed on.")]
    = 10_000,
    repeats: Annotated[int, typer.Option("--repeats", help="Repetitions per component (medians reported).")] = 20,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Time the engine's components and an end-to-end segment at a preset's shapes.

    Components: one SAC update at the preset's batch, one ensemble training minibatch (256 per member), one
    full model retrain on --samples transitions, one rollout step of the preset's rollout batch, one env
    step and one evaluation episode. Medians of repeated runs, device synchronized around timed regions.

    Examples:

        mbpo bench --preset hopper --steps 200

        mbpo bench --preset hopper --device cuda --steps 10000 --json
    """
    from mbpo_cli import bench as benchmarks

    with handled(ctx):
        if steps < 1 or samples < 2 or repeats < 1:
            raise ConfigError("--steps, --samples and --repeats must be positive (--samples at least 2)")
        config = resolve_config(preset=preset, device=device, overrides=set_)
        check_device(config.train.device)
        dev = resolve_device(config.train.device)
        timings, update_mode = benchmarks.bench_components(config, samples, repeats)
        rate, phases = benchmarks.bench_end_to_end(config, steps)
        result: dict[str, Any] = {"device": str(dev), "preset": preset, "torch": torch.__version__,
                                  "threads": torch.get_num_threads(), "sac_update_mode": update_mode}
        for timing in timings:
            result[f"{timing.name}_ms"] = round(timing.median, 4)
        result["env_steps_per_s"] = round(rate, 2)
        result["end_to_end_steps"] = steps
        result["end_to_end_phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
        if as_json:
            print(json.dumps(result))
            return
        per_step = {t.name: t.median * t.per_env_step for t in timings}
        total = sum(per_step.values()) or 1.0
        table = Table(title=f"mbpo bench: {preset} on {dev}")
        for column in ("component", "median ms", "min ms", "max ms", "runs per env step", "share of env step"):
            table.add_column(column, justify="right" if column != "component" else "left")
        for t in timings:
            table.add_row(t.name, f"{t.median:,.3f}", f"{t.low:,.3f}", f"{t.high:,.3f}", f"{t.per_env_step:g}",
                          f"{per_step[t.name] / total:.1%}" if t.per_env_step else "-")
        out.print(table)
        out.print(f"SAC update: {update_mode}", highlight=False)
        split = ", ".join(f"{k} {v:,.1f} s" for k, v in phases.items())
        out.print(f"end to end: {rate:,.2f} env steps/s over {steps:,} steps after exploration ({split})")


def main() -> None:
    """Console-script entry point."""
    app()
