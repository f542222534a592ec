"""A study kept in the registry's database: its registry group (kind ``tune``, the definition in its info) and its
Optuna study (Optuna's own tables beside the registry's), opened with the sampler and pruner of its definition."""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.registry import Registry, RegistryError
from mbpo_cli.sweeps.tune.search import PrunerType, SamplerType
from mbpo_cli.sweeps.tune.spec import StudySpec

if TYPE_CHECKING:
    import optuna

GROUP_KIND = "tune"
"""The registry group kind of a study."""
OPTUNA_MISSING = "mbpo tune needs Optuna: pip install 'mbpo-cli[tune]'"
SQLITE_BUSY_SECONDS = 30
"""How long the study's SQLite connections wait for a lock held by a run writing the registry (as the registry's)."""


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
