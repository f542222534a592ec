"""`mbpo tune`: a hyperparameter study with Optuna, each trial a normal run in the registry.

A study is kept in the registry's own database, in two parts: the registry group of kind ``tune`` holds the study's
definition (`mbpo_cli.sweeps.study.StudySpec`, in the group's info) and every trial's run (variant ``trial-N``);
Optuna's tables (``studies``, ``trials``, ``trial_params``, ``trial_intermediate_values``, ...: names the registry
never uses, which a test checks) hold the trials' parameters, the values reported to the pruner and the trials'
states. One database means one URL (the SQLite file ``RUNS_DIR/registry.db`` or ``$MBPO_REGISTRY_URL``'s
PostgreSQL), one thing to back up or copy with the runs directory, and a study that is found wherever its runs are.

Trials execute as ``mbpo train`` processes through an ablation's executors (`mbpo_cli.sweeps.executors`: local
processes or Ray tasks). The tuner follows each trial's run in the registry: every new evaluation is reported to
Optuna (the objective so far, at the run's env step), and a trial the pruner stops is told ``PRUNED`` at once and its
run asked to stop as Ctrl-C would (it checkpoints and ends ``interrupted``; ``mbpo resume`` could continue it).
Ctrl-C stops the running trials the same way and leaves them ``RUNNING`` in Optuna: ``mbpo tune --resume STUDY``
continues their runs, trains again those that had nothing to resume from, and asks for new trials until the study
has all of its trials.
"""

from __future__ import annotations

import fcntl
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

from mbpo_cli.config.load import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import TUNES_FOLDER, run_dir
from mbpo_cli.runs.outage import OUTAGE_EXIT_CODE
from mbpo_cli.runs.process import StopSignals, is_locked
from mbpo_cli.runs.registry import Registry, RegistryError, RunInfo, sanitize_name
from mbpo_cli.runs.resume import has_full_checkpoint
from mbpo_cli.runs.start import discard_run, run_named
from mbpo_cli.sweeps.ablation import Ending
from mbpo_cli.sweeps.executors import Executor, ExecutorLost
from mbpo_cli.sweeps.study import Param, ParamType, PrunerType, SamplerType, StudySpec

if TYPE_CHECKING:
    import optuna

GROUP_KIND = "tune"
"""The registry group kind of a study."""
TUNES_DIR = TUNES_FOLDER
"""Folder under the runs directory holding each study's trial configs, child logs and lock."""
OPTUNA_MISSING = "mbpo tune needs Optuna: pip install 'mbpo-cli[tune]'"
SQLITE_BUSY_SECONDS = 30
"""How long the study's SQLite connections wait for a lock held by a run writing the registry (as the registry's)."""
_INTERRUPTED_CODES = (130, 143, OUTAGE_EXIT_CODE)
"""Exit statuses of a run that stopped with a checkpoint (Ctrl-C, SIGTERM, a registry outage): resumable."""


def require_optuna() -> ModuleType:
    """The `optuna` module, quiet (warnings and its info log off: the tuner reports); ImportError with the one-line
    install hint when the extra is missing."""
    try:
        import optuna
    except ImportError:
        raise ImportError(OPTUNA_MISSING) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", module="optuna")
    return optuna


# ---------------------------------------------------------------------------------------------
# Where a study lives
# ---------------------------------------------------------------------------------------------


def tune_dir(runs_dir: Path, study: str) -> Path:
    """Where a study's trial configs and child logs live."""
    return runs_dir / TUNES_DIR / study


def trial_file(runs_dir: Path, study: str, number: int) -> Path:
    """The config file of trial ``number`` (what its `mbpo train --config` reads)."""
    return tune_dir(runs_dir, study) / "configs" / f"trial-{number}.yaml"


def run_name(study: str, number: int) -> str:
    """The registry name of trial ``number``'s run."""
    return sanitize_name(f"{study}-t{number}")


def variant_name(number: int) -> str:
    """The registry variant of trial ``number``'s run."""
    return f"trial-{number}"


@contextmanager
def study_lock(runs_dir: Path, study: str) -> Iterator[None]:
    """Hold the study's lock file while its trials run; RunError when another live process holds it."""
    folder = tune_dir(runs_dir, study)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "lock", "a")  # noqa: SIM115 - held for the block
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunError(f"study {study} is being run by another live process") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def open_storage(registry: Registry) -> optuna.storages.RDBStorage:
    """Optuna's storage in the registry's database (its own tables beside the registry's)."""
    optuna = require_optuna()
    sqlite = registry.url.startswith("sqlite")
    engine = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if sqlite else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(registry.url, engine_kwargs=engine)
    except (RuntimeError, ValueError) as error:  # a study schema newer than this Optuna, ...
        raise RegistryError(f"registry {registry.where}: cannot open the Optuna study tables: "
                            f"{' '.join(str(error).split())}") from None


def sampler_for(spec: StudySpec, asked: int) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with its seed plus ``asked`` (trials asked before this session), so that a resumed
    study draws new points rather than those of its first session again."""
    optuna = require_optuna()
    seed = spec.sampler.seed + asked
    if spec.sampler.type is SamplerType.GRID:
        grid = {p.key: p.grid() or [] for p in spec.space}
        return _grid_sampler(optuna)(grid, seed=seed)
    if spec.sampler.type is SamplerType.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.startup_trials)


def _grid_sampler(optuna: ModuleType) -> type[optuna.samplers.GridSampler]:
    """Optuna's grid sampler without its end of the study: once the grid is covered it calls ``study.stop()``, which
    only works inside ``study.optimize`` (here a RuntimeError inside ``study.tell``, the trial left unrecorded). The
    tuner ends the study by its number of trials, at most the grid's points."""

    class AskTellGridSampler(optuna.samplers.GridSampler):  # type: ignore[name-defined]
        def after_trial(self, *_args: Any) -> None:
            """Nothing: the tuner, not the sampler, ends the study."""

    return AskTellGridSampler


def pruner_for(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study's pruner."""
    optuna = require_optuna()
    pruner = spec.pruner
    if pruner.type is PrunerType.MEDIAN:
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_steps)
    if pruner.type is PrunerType.THRESHOLD:
        return optuna.pruners.ThresholdPruner(lower=pruner.lower, upper=pruner.upper,
                                              n_warmup_steps=pruner.warmup_steps)
    return optuna.pruners.NopPruner()


def create_study(registry: Registry, spec: StudySpec) -> None:
    """Create the study's registry group (the definition in its info) and its Optuna study; an existing group or
    Optuna study of that name is an error."""
    optuna = require_optuna()
    if registry.group_info(spec.name) is not None:
        raise RegistryError(f"group {spec.name!r} already exists; continue the study with: mbpo tune --resume "
                            f"{spec.name}, or choose another --name")
    storage = open_storage(registry)
    if any(s.study_name == spec.name for s in storage.get_all_studies()):
        raise RegistryError(f"an Optuna study named {spec.name!r} is already in {registry.where}; choose another "
                            "--name")
    registry.ensure_group(spec.name, GROUP_KIND, {"tune": spec.to_dict()})
    optuna.create_study(storage=storage, study_name=spec.name, direction=spec.objective.direction.value)


def load_spec(registry: Registry, name: str) -> StudySpec:
    """The definition of an existing study."""
    found = registry.group_info(name)
    if found is None:
        raise RegistryError(f"no study {name!r} in {registry.where}")
    if found["kind"] != GROUP_KIND or "tune" not in found["info"]:
        raise RunError(f"group {name!r} is not a study of mbpo tune (kind {found['kind']!r})")
    return StudySpec.from_dict(found["info"]["tune"])


def save_spec(registry: Registry, spec: StudySpec) -> None:
    """Store a changed definition (more trials) in the study's group."""
    registry.ensure_group(spec.name, GROUP_KIND, {"tune": spec.to_dict()})


def trials_asked(registry: Registry, name: str) -> int:
    """How many trials the Optuna study ``name`` has asked for (0 when it has none yet)."""
    optuna = require_optuna()
    storage = open_storage(registry)
    if not any(s.study_name == name for s in storage.get_all_studies()):
        return 0
    return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))


def open_study(registry: Registry, spec: StudySpec) -> optuna.Study:
    """The study's Optuna study with its sampler and pruner (created when its group exists without one: a first
    session stopped in between)."""
    optuna = require_optuna()
    storage = open_storage(registry)
    study = optuna.create_study(storage=storage, study_name=spec.name, direction=spec.objective.direction.value,
                                load_if_exists=True)
    asked = len(study.get_trials(deepcopy=False))
    return optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler_for(spec, asked),
                             pruner=pruner_for(spec))


# ---------------------------------------------------------------------------------------------
# Trials
# ---------------------------------------------------------------------------------------------


class TrialState(str, Enum):
    """What is happening to one trial, as this command knows it."""

    PENDING = "pending"
    RUNNING = "running"
    PRUNING = "pruning"
    """Told pruned; its run is checkpointing and stopping."""
    PRUNED = "pruned"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Its run stopped with a checkpoint (Ctrl-C): --resume continues it."""
    BUSY = "busy"
    """Its run is training in another process: not started."""
    LOST = "lost"
    """Running when the executor was lost."""


class Action(str, Enum):
    """How a pending trial's run starts."""

    TRAIN = "train"
    """A new run (`mbpo train --if-exists resume`)."""
    RESUME = "resume"
    """Its run continues from its newest checkpoint (`mbpo resume`)."""


@dataclass
class TrialTask:
    """One trial of the study and what is happening to it."""

    number: int
    values: dict[str, Any]
    """The trial's value of each key of the space."""
    target_steps: int
    state: TrialState = TrialState.PENDING
    earlier: bool = False
    """Ended before this session."""
    trial: optuna.Trial | None = None
    """Optuna's handle (reporting, pruning) of a trial this session runs."""
    action: Action = Action.TRAIN
    run_id: str | None = None
    env_steps: int = 0
    last_metric: float | None = None
    """The metric's newest value in the registry."""
    value: float | None = None
    """The objective: final once complete, so far while running."""
    reported: set[int] = field(default_factory=set)
    """Steps already reported to Optuna."""
    error: str | None = None
    handle: Any = None
    log: Path | None = None
    exit_code: int | None = None


def write_trial_config(spec: StudySpec, runs_dir: Path, number: int, config: Config) -> Path:
    """Write a trial's resolved config as YAML (``base: PRESET`` first when the study has one: it records the runs'
    preset); the file."""
    path = trial_file(runs_dir, spec.name, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ({"base": spec.preset} if spec.preset else {}) | config.to_dict()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def suggest(trial: optuna.Trial, param: Param) -> Any:
    """The trial's value of ``param``, asked of Optuna."""
    if param.type is ParamType.FLOAT:
        return trial.suggest_float(param.key, float(param.low or 0), float(param.high or 0), log=param.log,
                                   step=param.step)
    if param.type is ParamType.INT:
        return trial.suggest_int(param.key, int(param.low or 0), int(param.high or 0), log=param.log,
                                 step=int(param.step or 1))
    return param.decode(trial.suggest_categorical(param.key, param.optuna_choices()))


def ask(study: optuna.Study, spec: StudySpec, runs_dir: Path) -> TrialTask:
    """A new trial: its values asked of the sampler and its config file written, or FAILED (told so) when the config
    refuses the combination."""
    trial = study.ask()
    values = {p.key: suggest(trial, p) for p in spec.space}
    task = TrialTask(trial.number, values, int(spec.base["train"]["steps"]), trial=trial)
    try:
        config = spec.trial_config(values)
    except ConfigError as error:
        _fail(study, task, str(error))
        return task
    task.target_steps = config.train.steps
    write_trial_config(spec, runs_dir, task.number, config)
    return task


def _fail(study: optuna.Study, task: TrialTask, error: str) -> None:
    """Tell Optuna the trial failed, with why (its ``error`` user attribute)."""
    optuna = require_optuna()
    assert task.trial is not None
    task.trial.set_user_attr("error", error)
    study.tell(task.trial, state=optuna.trial.TrialState.FAIL)
    task.state, task.error = TrialState.FAILED, error


def _ended(optuna: ModuleType) -> dict[Any, TrialState]:
    """Optuna's finished trial states -> the task's."""
    states = optuna.trial.TrialState
    return {states.COMPLETE: TrialState.COMPLETE, states.PRUNED: TrialState.PRUNED, states.FAIL: TrialState.FAILED}


def plan_tasks(study: optuna.Study, spec: StudySpec, registry: Registry, runs_dir: Path) -> list[TrialTask]:
    """Every trial of the study so far: ended ones as they ended, unfinished ones (a stopped session's) matched with
    their runs: a finished run's trial is told its value now, a run with a checkpoint resumes, a run training in
    another process is left to it, and a trial whose run has nothing to resume from is trained again."""
    optuna = require_optuna()
    ended = _ended(optuna)
    tasks = []
    for frozen in study.get_trials(deepcopy=False):
        values = {p.key: p.decode(frozen.params[p.key]) for p in spec.space if p.key in frozen.params}
        task = TrialTask(frozen.number, values, int(spec.base["train"]["steps"]), value=frozen.value,
                         error=frozen.user_attrs.get("error"))
        run = run_named(registry, run_name(spec.name, frozen.number))
        if run is not None:
            _take_run(task, run, registry, spec)
        if frozen.state in ended:
            task.state, task.earlier = ended[frozen.state], True
            task.value = frozen.value if task.state is TrialState.COMPLETE else task.value
        elif frozen.state == optuna.trial.TrialState.RUNNING:
            task.trial = optuna.trial.Trial(study, frozen._trial_id)
            task.reported = set(frozen.intermediate_values)
            _plan_unfinished(task, run, study, spec, registry, runs_dir)
        else:
            continue  # a WAITING trial (enqueued by hand): study.ask() gives it out
        tasks.append(task)
    return tasks


def _plan_unfinished(task: TrialTask, run: RunInfo | None, study: optuna.Study, spec: StudySpec, registry: Registry,
                     runs_dir: Path) -> None:
    """Decide how an unfinished trial of a stopped session continues (see :func:`plan_tasks`)."""
    if len(task.values) != len(spec.space):
        _fail(study, task, "asked, but stopped before it had all its values")
        return
    if run is not None and run.status == "finished":
        _complete(study, spec, registry, task)
        return
    if run is not None and run.status == "running" and is_locked(run_dir(runs_dir, run.id)):
        task.state = TrialState.BUSY
        return
    if run is not None and has_full_checkpoint(registry, run.id):
        task.action = Action.RESUME
        return
    if run is not None:
        discard_run(registry, runs_dir, run)  # nothing to resume from: train it again
        task.run_id = None
    try:
        write_trial_config(spec, runs_dir, task.number, spec.trial_config(task.values))
    except ConfigError as error:
        _fail(study, task, str(error))


def _take_run(task: TrialTask, run: RunInfo, registry: Registry, spec: StudySpec) -> list[tuple[int, float]]:
    """Attach the run to the task (its id, steps and newest metric value); the metric's finite values by step."""
    task.run_id, task.env_steps, task.target_steps = run.id, run.env_steps, run.target_steps
    rows = [(step, value) for step, _, value in registry.metrics(run.id, spec.objective.metric)
            if math.isfinite(value)]
    task.last_metric = rows[-1][1] if rows else None
    running = spec.objective.running(rows)
    task.value = running[-1][1] if running else None
    return rows


def task_argv(task: TrialTask, spec: StudySpec, runs_dir: Path, threads: int) -> list[str]:
    """The `mbpo` arguments of a trial's run (the executor puts the program in front). A new run gets ``threads``
    torch threads unless its config sets ``train.threads``."""
    base = ["--runs-dir", str(runs_dir.absolute())]
    if task.action is Action.RESUME:
        assert task.run_id is not None
        return [*base, "resume", task.run_id, "--json"]
    own = spec.trial_config(task.values).train.threads
    chosen = [] if own is not None else ["--set", f"train.threads={threads}"]
    return [*base, "train", "--config", str(trial_file(runs_dir, spec.name, task.number).absolute()), *chosen,
            "--group", spec.name, "--variant", variant_name(task.number), "--name", run_name(spec.name, task.number),
            "--if-exists", "resume", "--json"]


def follow(study: optuna.Study, spec: StudySpec, task: TrialTask, registry: Registry,
           executor: Executor | None) -> None:
    """Read the trial's run from the registry, report its new evaluations to Optuna, and (with an ``executor``, while
    it runs) prune it when the pruner says so: told PRUNED at once, its run asked to stop."""
    optuna = require_optuna()
    if task.run_id is None:
        found = run_named(registry, run_name(spec.name, task.number))
        if found is None:
            return
        if task.trial is not None:
            task.trial.set_user_attr("run_id", found.id)
        task.run_id = found.id
    try:
        run = registry.get_run(task.run_id)
    except RegistryError:
        return
    rows = _take_run(task, run, registry, spec)
    if task.state is TrialState.PRUNING:
        return  # its run is stopping: Optuna takes no report of an ended trial
    assert task.trial is not None
    new = [(step, value) for step, value in spec.objective.running(rows) if step not in task.reported]
    for step, value in new:
        task.trial.report(value, step)
        task.reported.add(step)
    if executor is not None and new and task.state is TrialState.RUNNING and task.trial.should_prune():
        study.tell(task.trial, state=optuna.trial.TrialState.PRUNED)
        task.state = TrialState.PRUNING
        executor.interrupt(task.handle)


def _complete(study: optuna.Study, spec: StudySpec, registry: Registry, task: TrialTask) -> None:
    """Tell Optuna the value of a trial whose run finished (FAIL when the run recorded no value of the metric)."""
    follow(study, spec, task, registry, None)
    if task.value is None:
        _fail(study, task, f"its run recorded no {spec.objective.metric}")
        return
    assert task.trial is not None
    study.tell(task.trial, task.value)
    task.state = TrialState.COMPLETE


def end(study: optuna.Study, spec: StudySpec, task: TrialTask, code: int, registry: Registry) -> None:
    """Record the end of a trial's run (exit status ``code``)."""
    task.exit_code = code
    if task.state is TrialState.PRUNING:
        task.state = TrialState.PRUNED
    elif code == 0:
        _complete(study, spec, registry, task)
    elif code in _INTERRUPTED_CODES:
        task.state = TrialState.INTERRUPTED  # still RUNNING in Optuna: --resume continues its run
    else:
        _fail(study, task, f"its run exited with status {code} (log: {task.log})")


def full(study: optuna.Study, spec: StudySpec) -> bool:
    """Whether the study has asked for all of its trials."""
    return len(study.get_trials(deepcopy=False)) >= spec.trials


@dataclass
class Tuner:
    """What the trials of one session run with: the study, its registry and runs directory, the executor and the
    torch threads of each new run."""

    study: optuna.Study
    spec: StudySpec
    registry: Registry
    runs_dir: Path
    executor: Executor
    threads: int

    def start(self, task: TrialTask) -> None:
        """Submit the trial's run to the executor."""
        task.log = tune_dir(self.runs_dir, self.spec.name) / "logs" / f"trial-{task.number}.log"
        task.handle = self.executor.submit(task_argv(task, self.spec, self.runs_dir, self.threads), task.log)
        task.state = TrialState.RUNNING

    def fill(self, active: list[TrialTask], queue: list[TrialTask], tasks: list[TrialTask], jobs: int) -> None:
        """Start pending trials, then new ones, until ``jobs`` run or the study has all of its trials."""
        while len(active) < jobs and (queue or not full(self.study, self.spec)):
            task = queue.pop(0) if queue else ask(self.study, self.spec, self.runs_dir)
            if task not in tasks:
                tasks.append(task)
            if task.state is TrialState.PENDING:
                self.start(task)
                active.append(task)

    def collect(self, active: list[TrialTask]) -> None:
        """Take the trials whose runs ended out of ``active`` and record how (ExecutorLost passes through)."""
        for task in list(active):
            code = self.executor.poll(task.handle)
            if code is not None:
                active.remove(task)
                end(self.study, self.spec, task, code, self.registry)

    def follow(self, active: list[TrialTask]) -> None:
        """Report the running trials' new evaluations; prune those the pruner stops."""
        for task in active:
            follow(self.study, self.spec, task, self.registry, self.executor)

    def interrupt(self, active: list[TrialTask], state: TrialState | None = None) -> None:
        """Ask the running trials' runs to stop (each checkpoints), marking them ``state`` when given."""
        for task in active:
            if task.state is TrialState.RUNNING:
                self.executor.interrupt(task.handle)
                task.state = state or task.state


def execute(tuner: Tuner, tasks: list[TrialTask], jobs: int,
            on_tick: Callable[[list[TrialTask]], None] | None = None, poll_seconds: float = 0.25,
            stop: StopSignals | None = None) -> Ending:
    """Run the study's pending trials, then new ones until it has all of its trials, ``jobs`` at a time; new trials
    are appended to ``tasks``. Returns how it ended: the stop signal's number if one arrived, what was lost if the
    executor was.

    The runs are followed about once a second (reports and pruning), when ``on_tick`` is called too (and at the end).
    """
    queue = [t for t in tasks if t.state is TrialState.PENDING]
    active: list[TrialTask] = []
    stopping, lost, followed = False, None, 0.0
    while True:
        if stop is not None and stop.signum is not None and not stopping:
            stopping = True
            tuner.interrupt(active)
        if not stopping:
            tuner.fill(active, queue, tasks, jobs)
        try:
            tuner.collect(active)
        except ExecutorLost as error:
            lost = str(error)
            tuner.interrupt(active, TrialState.LOST)  # a live run checkpoints and stops rather than train unwatched
            break
        if time.monotonic() - followed >= 1.0:
            followed = time.monotonic()
            tuner.follow(active)
            if on_tick is not None:
                on_tick(tasks)
        if not active and (stopping or (not queue and full(tuner.study, tuner.spec))):
            break
        time.sleep(poll_seconds)
    if on_tick is not None:
        on_tick(tasks)
    return Ending(signum=None if stop is None else stop.signum, lost=lost)


@dataclass(frozen=True)
class Best:
    """The best complete trial."""

    number: int
    value: float
    values: dict[str, Any]
    run_id: str | None
    config: Config


def best_trial(spec: StudySpec, tasks: Sequence[TrialTask]) -> Best | None:
    """The complete trial with the best value (the first of equals), or None when no trial is complete."""
    complete = [t for t in tasks if t.state is TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    sign = 1.0 if spec.objective.direction.value == "maximize" else -1.0
    best = max(complete, key=lambda t: (sign * (t.value or 0.0), -t.number))
    assert best.value is not None
    return Best(best.number, best.value, best.values, best.run_id, spec.trial_config(best.values))


def leaves_threads(spec: StudySpec) -> bool:
    """Whether the study's runs get the tuner's thread count: neither the fixed config nor the space sets
    train.threads."""
    return spec.base["train"]["threads"] is None and all(p.key != "train.threads" for p in spec.space)
