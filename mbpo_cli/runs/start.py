"""Starting a run: register it, write its folder and train it; or, by name, continue it if it exists (what a retried
or requeued job runs)."""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from mbpo_cli.config.load import build_config, config_diff
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.envs import env_spec, make_env
from mbpo_cli.engine.memory import PackTooLarge, check_pack_fits, seed_memory
from mbpo_cli.engine.pack import build_pack, check_packable
from mbpo_cli.engine.state import build_run, resolve_device
from mbpo_cli.runs.errors import RunError, error_line
from mbpo_cli.runs.layout import COMMAND_FILE, CONFIG_FILE, PACK_FILE, run_dir
from mbpo_cli.runs.outage import outage_limit, record_pending
from mbpo_cli.runs.process import StopSignals, is_locked, run_lock
from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo, RunStatus, sanitize_name
from mbpo_cli.runs.reporting import Reporter, SafeReporter
from mbpo_cli.runs.resume import CONTINUED_AS_ASKED, has_full_checkpoint, resume_run
from mbpo_cli.runs.session import Outcome, Session, execute, finished_outcome
from mbpo_cli.runs.tensorboard import summary_writer
from mbpo_cli.runs.wandb_tracking import wandb_module

PACK_GROUP_KIND = "seeds"
"""The registry kind of the group a pack's runs go into when no group is given."""


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
    _check_integrations(config)
    device = resolve_device(config.train.device)
    run, folder = _register(config, meta, registry, runs_dir, device)
    with run_lock(folder):
        try:
            state = build_run(config, device)
        except BaseException as err:
            registry.set_status(run.id, RunStatus.FAILED, error=error_line(err))
            raise
        return execute([Session(registry, run, folder, state, reporter, signals, outage_seconds)])[0]


def _check_integrations(config: Config) -> None:
    """A missing package of a live integration fails here, before any run is registered."""
    if config.train.tensorboard:
        summary_writer("train.tensorboard")
    if config.train.track:
        wandb_module("train.track")


def _register(config: Config, meta: RunMeta, registry: Registry, runs_dir: Path,
              device: torch.device) -> tuple[RunInfo, Path]:
    """Register the run of `config` and write its folder (config and command); the run and its folder."""
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
    return run, folder


def start_pack(config: Config, meta: RunMeta, seeds: Sequence[int], registry: Registry, runs_dir: Path,
               reporters: Sequence[Reporter]) -> list[Outcome]:
    """Register one run per seed of `seeds` (each `config` with its seed, named `<name>-s<seed>` when a name is
    given), in `meta.group` or a new group of kind `seeds`, and train them as one pack in this process; each run's
    outcome, in seed order. `reporters` report each run (one per seed)."""
    reporters = [SafeReporter(r) for r in reporters]
    outage_seconds = outage_limit()
    with StopSignals(reporters[0]) as signals:
        _check_integrations(config)
        device = resolve_device(config.train.device)
        group = meta.group or _pack_group(registry, config, meta, seeds)
        runs: list[tuple[RunInfo, Path]] = []
        for seed in seeds:
            member = replace(config, train=replace(config.train, seed=seed))
            name = None if meta.name is None else f"{meta.name}-s{seed}"
            runs.append(_register(member, replace(meta, name=name, group=group), registry, runs_dir, device))
        ids = [run.id for run, _ in runs]
        for _, folder in runs:
            (folder / PACK_FILE).write_text(json.dumps({"runs": ids, "seeds": list(seeds)}) + "\n")
        with ExitStack() as locks:
            for _, folder in runs:
                locks.enter_context(run_lock(folder))
            try:
                state = build_pack(config, list(seeds), device)
            except BaseException as err:
                for run, _ in runs:
                    registry.set_status(run.id, RunStatus.FAILED, error=error_line(err))
                raise
            sessions = [Session(registry, run, folder, state, reporter, signals, outage_seconds, member=i)
                        for i, ((run, folder), reporter) in enumerate(zip(runs, reporters, strict=True))]
            return execute(sessions)


def check_pack_memory(config: Config, seeds: int) -> None:
    """Before anything is written: ConfigError when `config` cannot train a pack (`check_packable`), RunError when a
    pack of `seeds` seeds would not fit in the free memory of its device (the estimate, and the largest that fits)."""
    check_packable(config, seeds)
    env = make_env(config.env)
    spec = env_spec(env)
    env.close()
    try:
        check_pack_fits(seed_memory(config, spec.obs_dim, spec.act_dim), seeds, resolve_device(config.train.device))
    except PackTooLarge as err:
        raise RunError(str(err)) from None


def _pack_group(registry: Registry, config: Config, meta: RunMeta, seeds: Sequence[int]) -> str:
    """A new registry group (kind `seeds`) for a pack's runs: `<preset>-<algo>-seeds<first>-<last>-<token>`."""
    name = sanitize_name(f"{meta.preset or config.env.id.lower()}-{config.label}-seeds{seeds[0]}-{seeds[-1]}-"
                         f"{secrets.token_hex(3)}")
    registry.ensure_group(name, PACK_GROUP_KIND, {"pack": {"seeds": list(seeds)}})
    return name


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
