"""`mbpo ablate`: the MBPO paper's ablations as one command, across seeds, in parallel, resumable.

An ablation is a *plan* (the control config, its variants and the seeds) executed as one registry group
of kind ``ablation``: every variant x seed is one run, recorded with its ``variant`` name. The plan is
stored in the group's ``info`` so that ``mbpo ablate --resume GROUP`` can rebuild it.

Runs execute as separate ``mbpo train`` / ``mbpo resume`` processes through an :class:`Executor`
(``submit(argv) -> handle``, ``poll(handle)``, ``interrupt(handle)``). :class:`LocalProcessExecutor` runs
them on this machine; another executor (e.g. Ray) can be added without touching the plan, scheduling or
reporting code here, because everything else only speaks to that protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from mbpo_cli.config import Config, ConfigError, build_config, config_diff, parse_override, with_overrides
from mbpo_cli.registry import Registry, RegistryError, RunInfo, sanitize_name
from mbpo_cli.runner import RunError, StopSignals, is_locked, run_dir

CONTROL = "control"
GROUP_KIND = "ablation"
PLAN_VERSION = 1
ABLATIONS_DIR = "ablations"
"""Folder under the runs directory holding each ablation's resolved variant configs and child logs."""

_SPLIT_PAIRS = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: a name and the dotted overrides applied to the control config."""

    name: str
    overrides: tuple[str, ...] = ()


@dataclass
class Plan:
    """Everything needed to run (and rerun) an ablation."""

    group: str
    source: dict[str, Any]
    """How the control was chosen: {"preset"|"config"|"env": ..., "sets": [...], "steps": N, "device": ...}."""
    seeds: list[int]
    variants: list[Variant]
    """The control first."""
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Variant name -> its resolved, validated config (as plain data)."""

    @property
    def control(self) -> dict[str, Any]:
        """The control's config."""
        return self.configs[CONTROL]

    def diffs(self) -> dict[str, dict[str, tuple[Any, Any]]]:
        """Variant name -> {dotted key: (control value, variant value)}."""
        return {v.name: config_diff(self.control, self.configs[v.name]) for v in self.variants}

    def same_as_control(self) -> list[str]:
        """Variants that train exactly as the control does (their differences change no behaviour).

        A rollout schedule whose min and max lengths are equal is one constant length, whatever its epochs;
        so `--rollout-length K` on a preset that already rolls out K steps repeats the control.
        """
        control = _behaviour(self.control)
        return [v.name for v in self.variants if v.name != CONTROL and _behaviour(self.configs[v.name]) == control]

    def total_env_steps(self) -> int:
        """Real env steps over all runs."""
        return sum(int(self.configs[v.name]["train"]["steps"]) for v in self.variants) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the group's ``info`` (and ``--json``)."""
        return {
            "plan_version": PLAN_VERSION,
            "group": self.group,
            "source": self.source,
            "seeds": list(self.seeds),
            "steps": self.control["train"]["steps"],
            "total_env_steps": self.total_env_steps(),
            "variants": [{"name": v.name, "overrides": list(v.overrides)} for v in self.variants],
            "configs": self.configs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan stored by :meth:`to_dict`; every config is validated again."""
        if data.get("plan_version") != PLAN_VERSION:
            raise RunError(f"group {data.get('group')!r}: no ablation plan (version {PLAN_VERSION}) in its info")
        variants = [Variant(v["name"], tuple(v["overrides"])) for v in data["variants"]]
        configs = {v.name: build_config(data["configs"][v.name], f"ablation variant {v.name}").to_dict()
                   for v in variants}
        return cls(group=data["group"], source=data["source"], seeds=list(data["seeds"]), variants=variants,
                   configs=configs)


@dataclass(frozen=True)
class VariantFlags:
    """The variant options of `mbpo ablate`, as given."""

    no_model: bool = False
    rollout_lengths: Sequence[int] = ()
    from_initial_states: bool = False
    real_ratios: Sequence[float] = ()
    ensemble_sizes: Sequence[int] = ()
    deterministic_model: bool = False
    no_elites: bool = False
    updates_per_step: Sequence[int] = ()
    custom: Sequence[str] = ()
    """``NAME:KEY=VALUE[,KEY=VALUE...]`` strings."""


def parse_custom(text: str) -> Variant:
    """``'big:model.hidden=400,sac.hidden=512'`` -> Variant('big', ('model.hidden=400', 'sac.hidden=512')).

    Commas inside a value (``rollout.schedule=[0,0,5,5]``) are kept: a pair starts only at ``,KEY=``.
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise ConfigError(f"--variant {text}: expected NAME:KEY=VALUE[,KEY=VALUE...], e.g. big:model.hidden=400")
    pairs = tuple(p.strip() for p in _SPLIT_PAIRS.split(rest) if p.strip())
    for pair in pairs:
        parse_override(pair)  # a ConfigError for a pair without '='
    return Variant(name, pairs)


def _number(value: float) -> str:
    return f"{value:g}"


def variants_from_flags(flags: VariantFlags, control: Config) -> list[Variant]:
    """The variants the flags ask for, in a fixed order (control first); bad values raise ConfigError."""
    variants = [Variant(CONTROL)]
    if flags.no_model:
        # the paper's "no model" ablation: SAC on real data with the same G (not the G=1 SAC baseline)
        variants.append(Variant("no-model", ("algo=sac",)))
    for k in flags.rollout_lengths:
        if k < 1:
            raise ConfigError(f"--rollout-length: must be at least 1, got {k}")
        variants.append(Variant(f"k={k}", (f"rollout.schedule=[0, 0, {k}, {k}]",)))
    if flags.from_initial_states:
        variants.append(Variant("from-initial-states", ("rollout.from_initial_states=true",)))
    for ratio in flags.real_ratios:
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"--real-ratio: must be in [0, 1], got {_number(ratio)}")
        variants.append(Variant(f"real-ratio={_number(ratio)}", (f"sac.real_ratio={ratio!r}",)))
    for size in flags.ensemble_sizes:
        if size < 1:
            raise ConfigError(f"--ensemble-size: must be at least 1, got {size}")
        name = "single-model" if size == 1 else f"ensemble={size}"
        elites = min(control.model.elites, size)
        variants.append(Variant(name, (f"model.ensemble_size={size}", f"model.elites={elites}")))
    if flags.deterministic_model:
        variants.append(Variant("deterministic-model", ("model.deterministic=true",)))
    if flags.no_elites:
        variants.append(Variant("no-elites", ("model.use_elites=false",)))
    for g in flags.updates_per_step:
        if g < 1:
            raise ConfigError(f"--updates-per-step: must be at least 1, got {g}")
        variants.append(Variant(f"G={g}", (f"sac.updates_per_step={g}",)))
    variants.extend(parse_custom(text) for text in flags.custom)
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise ConfigError(f"variant {variant.name!r} is given twice (names must be unique)")
        seen.add(variant.name)
    return variants


def check_variant(variant: Variant) -> None:
    """Combinations that make no sense in one variant (one-line ConfigError)."""
    keys = {".".join(parse_override(o)[0]): parse_override(o)[1] for o in variant.overrides}
    if keys.get("algo") == "sac":
        model_keys = sorted(k for k in keys if k.startswith(("rollout.", "model.")))
        if model_keys:
            raise ConfigError(f"variant {variant.name}: algo=sac (no model) cannot be combined with "
                              f"{', '.join(model_keys)} (they have no effect without a model)")
    if variant.name == CONTROL and variant.overrides:
        raise ConfigError("variant name 'control' is reserved for the unchanged configuration")


def _behaviour(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config with a constant rollout schedule written one way."""
    schedule = config["rollout"]["schedule"]
    if schedule[2] == schedule[3]:
        config = {**config, "rollout": {**config["rollout"], "schedule": [0, 0, schedule[2], schedule[3]]}}
    return config


def default_group_name(source: dict[str, Any], plan_data: Any) -> str:
    """``<preset>-ablation-<short hash>`` (the hash covers the plan and the time, so reruns get new names)."""
    stem = source.get("preset") or (Path(source["config"]).stem if source.get("config") else source.get("env"))
    digest = hashlib.sha1(json.dumps([plan_data, time.time_ns()], sort_keys=True, default=str).encode())
    return sanitize_name(f"{str(stem).lower()}-ablation-{digest.hexdigest()[:6]}")


def build_plan(control: Config, source: dict[str, Any], flags: VariantFlags, seeds: Sequence[int],
               group: str | None) -> Plan:
    """The validated plan: every variant's config is built (and checked) before anything runs."""
    variants = variants_from_flags(flags, control)
    configs: dict[str, dict[str, Any]] = {}
    for variant in variants:
        check_variant(variant)
        configs[variant.name] = with_overrides(control, list(variant.overrides), f"variant {variant.name}").to_dict()
    if len(variants) == 1:
        raise ConfigError("no variants: add at least one variant flag (e.g. --no-model, --rollout-length 5)")
    name = group or default_group_name(source, [[v.name, v.overrides] for v in variants])
    return Plan(group=sanitize_name(name), source=source, seeds=list(seeds), variants=variants, configs=configs)


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


class Executor(Protocol):
    """Where the runs' processes execute. The ablation logic only uses these three calls.

    ``submit`` starts ``argv`` (an `mbpo` command line) and returns an opaque handle; ``poll`` returns
    None while it runs and its exit code after; ``interrupt`` asks it to stop cleanly (as Ctrl-C would:
    the run checkpoints and is marked interrupted). A Ray (or Slurm, ...) executor implements the same.
    """

    def submit(self, argv: list[str], log: Path) -> Any: ...
    def poll(self, handle: Any) -> int | None: ...
    def interrupt(self, handle: Any) -> None: ...


class LocalProcessExecutor:
    """Child processes on this machine, each in its own session (Ctrl-C reaches them only by forwarding)."""

    def submit(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` with stdout and stderr appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            handle.write(f"$ {shlex.join(argv)}\n".encode())
            handle.flush()
            return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def poll(self, handle: subprocess.Popen[bytes]) -> int | None:
        """The exit code, or None while running."""
        return handle.poll()

    def interrupt(self, handle: subprocess.Popen[bytes]) -> None:
        """SIGINT to the child (it finishes its step, checkpoints and exits 130)."""
        if handle.poll() is None:
            with suppress(ProcessLookupError):
                handle.send_signal(signal.SIGINT)


def mbpo_command() -> list[str]:
    """How to start the `mbpo` CLI in a child process (the console script next to this interpreter)."""
    script = Path(sys.executable).parent / "mbpo"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from mbpo_cli.cli import main; main()"]


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


def ablation_dir(runs_dir: Path, group: str) -> Path:
    """Where an ablation's variant configs and child logs live."""
    return runs_dir / ABLATIONS_DIR / group


def variant_file(runs_dir: Path, group: str, variant: str) -> Path:
    """The resolved config file of one variant."""
    return ablation_dir(runs_dir, group) / "configs" / f"{sanitize_name(variant)}.yaml"


def write_variant_configs(plan: Plan, runs_dir: Path) -> None:
    """Write every variant's resolved config as YAML (what its `mbpo train --config` reads).

    A plan made from a preset names it as the file's `base:` (every key is set, so the base changes no
    value; it records the runs' preset in the registry).
    """
    preset = plan.source.get("preset")
    for variant in plan.variants:
        path = variant_file(runs_dir, plan.group, variant.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ({"base": preset} if preset else {}) | plan.configs[variant.name]
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def create_group(registry: Registry, plan: Plan) -> None:
    """Create the ablation's registry group with the plan in its info; an existing group is an error."""
    if registry.group_info(plan.group) is not None:
        raise RegistryError(f"group {plan.group!r} already exists; continue it with: mbpo ablate --resume "
                            f"{plan.group}, or choose another --name")
    registry.ensure_group(plan.group, GROUP_KIND, {"ablation": plan.to_dict()})


def load_plan(registry: Registry, group: str) -> Plan:
    """The plan of an existing ablation group."""
    found = registry.group_info(group)
    if found is None:
        raise RegistryError(f"no group {group!r} in {registry.where}")
    if found["kind"] != GROUP_KIND or "ablation" not in found["info"]:
        raise RunError(f"group {group!r} is not an ablation (kind {found['kind']!r})")
    return Plan.from_dict(found["info"]["ablation"])


@dataclass
class Task:
    """One variant x seed of the plan and what is happening to it."""

    variant: str
    seed: int
    run_id: str | None = None
    state: str = "pending"
    """pending, skipped (finished before), running, finished, interrupted, failed, busy (another process)."""
    action: str = "train"
    """train (never started) or resume."""
    exit_code: int | None = None
    handle: Any = None
    log: Path | None = None

    @property
    def label(self) -> str:
        """``variant/s<seed>``."""
        return f"{self.variant}/s{self.seed}"


def run_name(group: str, variant: str, seed: int) -> str:
    """The registry name of one run of the ablation."""
    return sanitize_name(f"{group}-{variant}-s{seed}")


def plan_tasks(plan: Plan, registry: Registry, runs_dir: Path) -> list[Task]:
    """The tasks of the plan, matched with the group's runs: finished ones are skipped, others resumed.

    A run stopped before its first full checkpoint has nothing to resume from: it is deleted and trained again.
    """
    existing: dict[tuple[str | None, int], RunInfo] = {}
    for run in registry.runs_in_group(plan.group):
        existing[(run.variant, run.seed)] = run  # the newest wins
    tasks = []
    for variant in plan.variants:
        for seed in plan.seeds:
            task = Task(variant.name, seed)
            run = existing.get((variant.name, seed))
            if run is not None:
                task.run_id = run.id
                if run.status == "finished":
                    task.state = "skipped"
                elif run.status == "running" and is_locked(run_dir(runs_dir, run.id)):
                    task.state = "busy"
                elif not any(c.kind != "best" for c in registry.checkpoints(run.id)):
                    # stopped before its first checkpoint: nothing to resume from, so train it again
                    registry.delete_run(run.id)
                    shutil.rmtree(run_dir(runs_dir, run.id), ignore_errors=True)
                    task.run_id = None
                else:
                    task.action = "resume"
            tasks.append(task)
    return tasks


def task_argv(task: Task, plan: Plan, runs_dir: Path, threads: int) -> list[str]:
    """The child command line of a task."""
    base = [*mbpo_command(), "--runs-dir", str(runs_dir)]
    if task.action == "resume":
        assert task.run_id is not None
        return [*base, "resume", task.run_id, "--json"]
    return [*base, "train", "--config", str(variant_file(runs_dir, plan.group, task.variant)),
            "--seed", str(task.seed), "--set", f"train.threads={threads}", "--group", plan.group,
            "--variant", task.variant, "--name", run_name(plan.group, task.variant, task.seed), "--json"]


def threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` concurrent runs (no oversubscription)."""
    return max(1, (os.cpu_count() or 1) // jobs)


def execute(plan: Plan, tasks: list[Task], registry: Registry, runs_dir: Path, executor: Executor, jobs: int,
            on_tick: Callable[[list[Task]], None] | None = None, poll_seconds: float = 0.25,
            stop: StopSignals | None = None) -> int | None:
    """Run the pending tasks, ``jobs`` at a time; returns the stop signal's number if one arrived, else None.

    ``on_tick`` is called about once a second (and at the end) for the display.
    """
    threads = threads_per_job(jobs)
    logs = ablation_dir(runs_dir, plan.group) / "logs"
    queue = [t for t in tasks if t.state == "pending"]
    active: list[Task] = []
    last_tick = 0.0
    stopping = False
    while queue or active:
        if stop is not None and stop.signum is not None and not stopping:
            stopping = True
            for task in active:
                executor.interrupt(task.handle)
        while queue and len(active) < jobs and not stopping:
            task = queue.pop(0)
            task.log = logs / f"{sanitize_name(task.variant)}-s{task.seed}.log"
            task.handle = executor.submit(task_argv(task, plan, runs_dir, threads), task.log)
            task.state = "running"
            active.append(task)
        for task in list(active):
            code = executor.poll(task.handle)
            if code is None:
                continue
            active.remove(task)
            task.exit_code = code
            task.state = {0: "finished", 130: "interrupted", 143: "interrupted"}.get(code, "failed")
            _attach_run(task, plan, registry)
        if stopping and not active:
            break
        now = time.monotonic()
        if on_tick is not None and now - last_tick >= 1.0:
            last_tick = now
            _attach_runs(active, plan, registry)
            on_tick(tasks)
        time.sleep(poll_seconds)
    if on_tick is not None:
        on_tick(tasks)
    return None if stop is None else stop.signum


def _attach_run(task: Task, plan: Plan, registry: Registry) -> None:
    if task.run_id is None:
        with suppress(RegistryError):
            task.run_id = registry.get_run(run_name(plan.group, task.variant, task.seed)).id


def _attach_runs(tasks: Sequence[Task], plan: Plan, registry: Registry) -> None:
    for task in tasks:
        _attach_run(task, plan, registry)


def run_rows(plan: Plan, tasks: Sequence[Task], registry: Registry) -> list[dict[str, Any]]:
    """One row per task: variant, seed, run id, status (registry), steps and last eval return."""
    rows = []
    for task in tasks:
        row: dict[str, Any] = {"variant": task.variant, "seed": task.seed, "id": task.run_id, "status": task.state,
                               "env_steps": 0, "target_steps": plan.configs[task.variant]["train"]["steps"],
                               "last_eval_return": None}
        if task.run_id is not None:
            try:
                run = registry.get_run(task.run_id)
            except RegistryError:
                run = None
            if run is not None:
                row["env_steps"] = run.env_steps
                row["target_steps"] = run.target_steps
                if task.state not in ("running", "pending"):
                    row["status"] = run.display_status if task.state != "skipped" else "finished (earlier)"
                evals = registry.metrics(run.id, "eval_return")
                row["last_eval_return"] = evals[-1][2] if evals else None
        rows.append(row)
    return rows


def describe_value(value: Any) -> str:
    """A config value as YAML-ish text for tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(describe_value(v) for v in value) + "]"
    return str(value)
