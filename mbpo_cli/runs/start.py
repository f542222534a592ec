"""Starting a run: register it, write its folder and train it; or, by name, continue it if it exists (what a retried
or requeued job runs)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mbpo_cli.config.load import build_config, config_diff
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.state import build_run, resolve_device
from mbpo_cli.runs.errors import RunError, error_line
from mbpo_cli.runs.layout import COMMAND_FILE, CONFIG_FILE, run_dir
from mbpo_cli.runs.outage import outage_limit, record_pending
from mbpo_cli.runs.process import StopSignals, is_locked, run_lock
from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo, RunStatus, sanitize_name
from mbpo_cli.runs.reporting import Reporter, SafeReporter
from mbpo_cli.runs.resume import CONTINUED_AS_ASKED, has_full_checkpoint, resume_run
from mbpo_cli.runs.session import Outcome, Session, finished_outcome
from mbpo_cli.runs.tensorboard import summary_writer
from mbpo_cli.runs.wandb_tracking import wandb_module


@dataclass(frozen=True)
class RunMeta:
    """How a run was asked for (recorded in the registry)."""

    preset: str | None
    name: str | None
    command: str
    group: str | None = None
    variant: str | None = None


def command_line() -> str:
    """The exact command line of this process."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def git_commit() -> str | None:
    """The current commit of the source checkout, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def start_run(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path, reporter: Reporter) -> Outcome:
    """Register a new run, create its folder and train it.

    Stop signals are caught from before the run is registered: one that arrives while the run is being set up
    stops it after set-up, with a checkpoint at env step 0, marked interrupted.
    """
    reporter = SafeReporter(reporter)
    outage_seconds = outage_limit()
    with StopSignals(reporter) as signals:
        return _start_run(config, meta, registry, runs_dir, reporter, signals, outage_seconds)


def _start_run(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path, reporter: Reporter,
               signals: StopSignals, outage_seconds: float) -> Outcome:
    if config.train.tensorboard:
        summary_writer("train.tensorboard")  # a missing package fails here, before the run is registered
    if config.train.track:
        wandb_module("train.track")
    device = resolve_device(config.train.device)
    recorded = config.to_dict()
    run = registry.create_run(
        name=meta.name, preset=meta.preset, env_id=config.env.id, algo=config.label, seed=config.train.seed,
        config=recorded, device=str(device), command=meta.command, target_steps=config.train.steps,
        group=meta.group, variant=meta.variant, git_commit=git_commit(),
    )
    folder = run_dir(runs_dir, run.id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(yaml.safe_dump(recorded, sort_keys=False))
        (folder / COMMAND_FILE).write_text(meta.command + "\n")
    except OSError as err:
        registry.set_status(run.id, RunStatus.FAILED, error=f"cannot write run folder: {err.strerror}")
        raise RunError(f"cannot write run folder {folder}: {err.strerror}") from None
    with run_lock(folder):
        try:
            state = build_run(config, device)
        except BaseException as err:
            registry.set_status(run.id, RunStatus.FAILED, error=error_line(err))
            raise
        return Session(registry, run, folder, state, reporter, signals, outage_seconds).execute()


def discard_run(registry: Registry, runs_dir: Path, run: RunInfo) -> None:
    """Delete a run that stopped before its first checkpoint (nothing to resume from): its rows and its folder."""
    registry.delete_run(run.id)
    shutil.rmtree(run_dir(runs_dir, run.id), ignore_errors=True)


def run_named(registry: Registry, name: str) -> RunInfo | None:
    """The run whose name is exactly `name` (not an id or an id prefix), or None."""
    try:
        run = registry.get_run(name)
    except RegistryError:
        return None
    return run if run.name == name else None


def check_same_run(config: Config, run: RunInfo) -> None:
    """RunError unless `config` asks for the run as it is recorded, but for more steps or another device (see
    CONTINUED_AS_ASKED): a requeued job's command that changed would otherwise be ignored."""
    recorded = build_config(run.config, f"run {run.id}")
    changed = config_diff(recorded.to_dict(), config.to_dict())
    other = {k: v for k, v in changed.items() if k not in CONTINUED_AS_ASKED}
    if other:
        raise RunError(f"run {run.name} exists with another config ({_changes(other)}); --if-exists resume "
                       "continues a run as recorded: ask for it unchanged, or use another --name")
    if config.train.steps < recorded.train.steps:
        raise RunError(f"run {run.name} exists with train.steps {recorded.train.steps}, more than the "
                       f"{config.train.steps} asked for; --if-exists resume may extend a run, not shorten it")


def _changes(changed: dict[str, tuple[Any, Any]], shown: int = 3) -> str:
    """`key: old -> new` for the first `shown` differences (values cut to 30 characters), then how many more."""
    cut = [f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(changed.items())[:shown]]
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    return ", ".join(cut) + more


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:29] + "…"


def start_or_resume(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path,
                    reporter: Reporter) -> Outcome:
    """Train the run named `meta.name`, or continue it if it exists: what a retried or requeued job runs.

    An existing run continues from its newest good checkpoint with its recorded config, extended when `config`
    asks for more steps (any other difference is refused: see `check_same_run`); one that stopped before its first
    checkpoint is discarded and trained anew; a finished one asked for no more steps is left as it is (its
    outcome, exit 0). Registry writes that the run kept through an outage are recorded first.
    """
    assert meta.name is not None
    run = run_named(registry, sanitize_name(meta.name))
    if run is not None:
        run = record_pending(registry, run, runs_dir, reporter)
    if run is not None and (run.status == RunStatus.FINISHED or has_full_checkpoint(registry, run.id)
                            or is_locked(run_dir(runs_dir, run.id))):
        check_same_run(config, run)
        steps = config.train.steps if config.train.steps > run.target_steps else None
        if run.status == RunStatus.FINISHED and steps is None:
            reporter.message(f"run {run.id} ({run.name}) already finished at env step {run.env_steps:,}")
            return finished_outcome(registry, run)
        device = config.train.device if config.train.device != run.config["train"]["device"] else None
        return resume_run(registry, runs_dir, run.id, reporter, steps=steps, device=device)
    if run is not None:
        discard_run(registry, runs_dir, run)
    return start_run(config, meta, registry, runs_dir, reporter)
