"""Resuming a run: the same run id and registry rows, continued from its newest good checkpoint with the config it
recorded (more steps or another device when asked; an edited config.yaml only with `--force`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mbpo_cli.config.load import build_config, config_diff, read_yaml
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.pack import pack_states
from mbpo_cli.engine.state import RunState, build_run, resolve_device
from mbpo_cli.runs.checkpoint import CheckpointError, check_full, load_file, restore
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import CONFIG_FILE, PACK_FILE, checkpoint_file, run_dir
from mbpo_cli.runs.outage import outage_limit, record_pending
from mbpo_cli.runs.process import StopSignals, is_locked, run_lock
from mbpo_cli.runs.python_envs import check_rebuildable
from mbpo_cli.runs.registry import CheckpointInfo, Registry, RegistryError, RunInfo, RunStatus
from mbpo_cli.runs.reporting import Reporter, SafeReporter, SilentReporter
from mbpo_cli.runs.session import Outcome, Session, execute, finished_outcome
from mbpo_cli.runs.tensorboard import summary_writer
from mbpo_cli.runs.wandb_tracking import wandb_module

CONTINUED_AS_ASKED = ("train.steps", "train.device")
"""Config keys whose new value a resume takes (`--steps` extends a run, a device is this machine's): the only
differences from the run's recorded config, and from its checkpoint's, that need no `--force`."""
SESSION_KEYS = ("train.track",)
"""Config keys a resume may also change from its checkpoint's (`--track`: how this session is logged, not what the
run learns)."""


def has_full_checkpoint(registry: Registry, run_id: str) -> bool:
    """Whether the run has a checkpoint to resume from (a `best` one holds only the policy)."""
    return any(c.kind != "best" for c in registry.checkpoints(run_id))


def latest_good_checkpoint(
    registry: Registry, run: RunInfo, reporter: Reporter, runs_dir: Path
) -> tuple[CheckpointInfo, dict[str, Any]]:
    """The newest full checkpoint that verifies and loads; older ones are tried with a warning each.

    Unusable checkpoints newer than the one returned are forgotten and their files deleted: the run
    continues from an earlier step and rewrites them, and they must not count towards `keep_checkpoints`.
    """
    full = [c for c in registry.checkpoints(run.id) if c.kind != "best"]
    rejected: list[CheckpointInfo] = []
    for info in reversed(full):
        try:
            file = checkpoint_file(runs_dir, info.path)
            payload = load_file(file, info.sha256)
            check_full(payload, str(file))
        except CheckpointError as err:
            reporter.message(f"warning: {err}; trying the previous checkpoint")
            rejected.append(info)
            continue
        for bad in rejected:
            with suppress(OSError):
                checkpoint_file(runs_dir, bad.path).unlink(missing_ok=True)
            registry.remove_checkpoint(run.id, bad.path)
        return info, payload
    raise RunError(f"run {run.id} has no usable checkpoint to resume from")


def resume_run(
    registry: Registry, runs_dir: Path, ref: str, reporter: Reporter, *, steps: int | None = None,
    device: str | None = None, force: bool = False, track: bool | None = None,
) -> Outcome:
    """Continue run `ref` from its newest good checkpoint, in the same run id and registry rows.

    A stop signal from the start on stops the run once it is restored (it is saved again, unchanged). `track`
    turns W&B tracking (`train.track`) on or off from this session on.
    """
    reporter = SafeReporter(reporter)
    outage_seconds = outage_limit()
    with StopSignals(reporter) as signals:
        return _resume_run(registry, runs_dir, ref, reporter, signals, outage_seconds, steps=steps, device=device,
                           force=force, track=track)


def _edited_config(run: RunInfo, recorded: Config, config_file: Path, reporter: Reporter, force: bool) -> Config:
    """The run's config: as recorded, or as its folder's config.yaml was edited since (only with `force`)."""
    if not config_file.exists():
        return recorded
    on_disk = build_config(read_yaml(config_file), str(config_file))
    changed = config_diff(recorded.to_dict(), on_disk.to_dict())
    if changed and not force:
        keys = ", ".join(sorted(changed))
        raise RunError(f"run {run.id}: {CONFIG_FILE} changed since the run started ({keys}); use --force to accept")
    if not changed:
        return recorded
    what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
    reporter.message(f"config changed (--force): {what}")
    return on_disk


def _as_asked(config: Config, steps: int | None, device: str | None, track: bool | None) -> Config:
    """`config` with the steps, device and tracking asked for, validated as any config is (built once from its
    values: a `dataclasses.replace` would skip the range rules, e.g. that train.steps is positive)."""
    given = (("steps", steps), ("device", device), ("track", track))
    asked = {key: value for key, value in given if value is not None}
    if not asked:
        return config
    data = config.to_dict()
    return build_config({**data, "train": {**data["train"], **asked}}, "resume")


def _restored_state(run: RunInfo, config: Config, config_dict: dict[str, Any], info: CheckpointInfo,
                    payload: dict[str, Any], force: bool) -> tuple[RunState, bool]:
    """A run built from `config` and restored from the checkpoint `payload` (refused when the checkpoint's config
    differs in more than CONTINUED_AS_ASKED, unless `force`); whether the continuation is exact."""
    saved = build_config(payload["config"], info.path).to_dict()
    drift = {k: v for k, v in config_diff(saved, config_dict).items()
             if k not in (*CONTINUED_AS_ASKED, *SESSION_KEYS)}
    if drift and not force:
        raise RunError(f"run {run.id}: the config differs from its checkpoint ({', '.join(drift)}); use --force")
    state = build_run(config, resolve_device(config.train.device))
    try:
        exact = restore(state, payload)
    except CheckpointError as err:
        raise RunError(str(err)) from None
    return state, exact


def _resume_run(
    registry: Registry, runs_dir: Path, ref: str, reporter: Reporter, signals: StopSignals, outage_seconds: float,
    *, steps: int | None, device: str | None, force: bool, track: bool | None,
) -> Outcome:
    run = registry.get_run(ref)
    folder = run_dir(runs_dir, run.id)
    if not folder.is_dir():
        raise RunError(f"run {run.id} cannot be resumed: its folder {folder} is gone (with its checkpoints)")
    was_finished = run.status == RunStatus.FINISHED
    run = record_pending(registry, run, runs_dir, reporter)
    recorded = build_config(run.config, f"run {run.id}")
    check_rebuildable(recorded.env.id, run.id)
    if run.status == RunStatus.FINISHED and (steps is None or steps <= run.env_steps):
        if not was_finished:
            return finished_outcome(registry, run)  # it finished during a registry outage: now recorded
        raise RunError(
            f"run {run.id} is finished at {run.env_steps} steps; pass --steps N with N > {run.env_steps} to extend it"
        )
    if is_locked(folder):
        raise RunError(f"run {run.id} is still running in another process")
    config_file = folder / CONFIG_FILE
    config = _as_asked(_edited_config(run, recorded, config_file, reporter, force), steps, device, track)
    config_dict = config.to_dict()
    if config.train.tensorboard:
        summary_writer("train.tensorboard")  # a missing package fails here, before anything is restored
    if config.train.track:
        wandb_module("train.track")
    with run_lock(folder):
        info, payload = latest_good_checkpoint(registry, run, reporter, runs_dir)
        if steps is not None and steps < info.step:
            raise RunError(f"run {run.id}: --steps {steps} is below its checkpoint at env step {info.step}")
        state, exact = _restored_state(run, config, config_dict, info, payload, force)
        registry.delete_metrics_after(run.id, state.env_step)
        if config_dict != run.config:
            registry.update_config(run.id, config_dict, target_steps=config.train.steps)
            config_file.write_text(yaml.safe_dump(config_dict, sort_keys=False))
        if not exact:
            reporter.message("resuming on another device type: the continuation is not bitwise exact")
        reporter.message(f"resuming run {run.id} from env step {state.env_step} ({Path(info.path).name})")
        outcome = execute([Session(registry, run, folder, state, reporter, signals, outage_seconds)])[0]
        outcome.exact_resume = exact
        return outcome


def pack_runs(runs_dir: Path, run: RunInfo) -> list[str]:
    """The ids of the runs of the pack `run` was trained in, in the pack's seed order (`[run.id]` for a lone run)."""
    file = run_dir(runs_dir, run.id) / PACK_FILE
    if not file.exists():
        return [run.id]
    try:
        return [str(i) for i in json.loads(file.read_text())["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunError(f"run {run.id}: its {PACK_FILE} is unreadable ({err})") from None


def _kept_runs(registry: Registry, ids: list[str]) -> list[RunInfo]:
    """The runs of `ids` the registry still holds (a run deleted with `mbpo runs delete` has left its pack)."""
    kept = []
    for run_id in ids:
        with suppress(RegistryError):
            kept.append(registry.get_run(run_id))
    return kept


def _pack_config(run: RunInfo, reporter: Reporter, runs_dir: Path, force: bool, steps: int | None,
                 device: str | None, track: bool | None) -> Config:
    """The config a run of a pack resumes with (as `resume_run` takes it), once its folder is there and free."""
    folder = run_dir(runs_dir, run.id)
    if not folder.is_dir():
        raise RunError(f"run {run.id} cannot be resumed: its folder {folder} is gone (with its checkpoints)")
    if is_locked(folder):
        raise RunError(f"run {run.id} is still running in another process")
    recorded = build_config(run.config, f"run {run.id}")
    return _as_asked(_edited_config(run, recorded, folder / CONFIG_FILE, reporter, force), steps, device, track)


def resume_pack(
    registry: Registry, runs_dir: Path, ids: list[str], reporters: Callable[[int], Sequence[Reporter]], *,
    steps: int | None = None, device: str | None = None, force: bool = False, track: bool | None = None,
) -> list[Outcome]:
    """Continue the runs `ids` of one pack together from their newest good checkpoints (which must be at one env
    step); a run that failed, or was deleted, has left the pack and stays as it is. `reporters(n)` gives the n runs'
    reporters."""
    quiet = SafeReporter(SilentReporter())
    runs = [record_pending(registry, run, runs_dir, quiet) for run in _kept_runs(registry, ids)]
    runs = [run for run in runs if run.status != RunStatus.FAILED]
    if not runs:
        raise RunError(f"every run of the pack of {ids[0]} has failed: nothing to resume")
    shown = [SafeReporter(r) for r in reporters(len(runs))]
    outage_seconds = outage_limit()
    with StopSignals(shown[0]) as signals:
        configs = [_pack_config(run, reporter, runs_dir, force, steps, device, track)
                   for run, reporter in zip(runs, shown, strict=True)]
        first = configs[0]
        if any(config_diff(first.to_dict(), replace(c, train=replace(c.train, seed=first.train.seed)).to_dict())
               for c in configs[1:]):
            raise RunError(f"the runs of the pack of {runs[0].id} differ in more than their seed: resume each alone")
        if all(run.status == RunStatus.FINISHED for run in runs) and (steps is None or steps <= runs[0].env_steps):
            raise RunError(f"the pack of {runs[0].id} is finished at {runs[0].env_steps} steps; pass --steps N with "
                           f"N > {runs[0].env_steps} to extend it")
        with ExitStack() as locks:
            for run in runs:
                locks.enter_context(run_lock(run_dir(runs_dir, run.id)))
            found = [latest_good_checkpoint(registry, run, reporter, runs_dir)
                     for run, reporter in zip(runs, shown, strict=True)]
            at = {info.step for info, _ in found}
            if len(at) > 1:
                raise RunError(f"the runs of the pack of {runs[0].id} have their newest checkpoints at different env "
                               f"steps ({', '.join(str(s) for s in sorted(at))}): resume each alone")
            if steps is not None and steps < found[0][0].step:
                raise RunError(f"pack of {runs[0].id}: --steps {steps} is below its checkpoint at env step "
                               f"{found[0][0].step}")
            lones = [build_run(config, resolve_device(config.train.device)) for config in configs]
            try:
                exact = all([restore(lone, payload) for lone, (_, payload) in zip(lones, found, strict=True)])
            except CheckpointError as err:
                raise RunError(str(err)) from None
            for index, lone in enumerate(lones):
                lone.lone.index = index  # the resumed pack's seeds, in its order
            state = pack_states(lones)
            sessions = []
            for member, (run, reporter, config) in enumerate(zip(runs, shown, configs, strict=True)):
                registry.delete_metrics_after(run.id, state.env_step)
                config_dict = config.to_dict()
                if config_dict != run.config:
                    registry.update_config(run.id, config_dict, target_steps=config.train.steps)
                    (run_dir(runs_dir, run.id) / CONFIG_FILE).write_text(yaml.safe_dump(config_dict, sort_keys=False))
                sessions.append(Session(registry, run, run_dir(runs_dir, run.id), state, reporter, signals,
                                        outage_seconds, member=member))
            if not exact:
                shown[0].message("resuming on another device type: the continuation is not bitwise exact")
            shown[0].message(f"resuming the pack of {len(runs)} runs ({', '.join(r.id for r in runs)}) from env step "
                             f"{state.env_step}")
            outcomes = execute(sessions)
            for outcome in outcomes:
                outcome.exact_resume = exact
            return outcomes
