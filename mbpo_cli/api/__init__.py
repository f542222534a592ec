"""The Python API: train, resume, load a policy and read metrics from a notebook or script, recorded in the same
registry as the command line (`mbpo runs list` shows what it trains, `mbpo eval` evaluates it).

Layer 6, above runs, sweeps and reports; the command line (layer 7) alone imports it (`mbpo train` resolves its
config and starts its run through :mod:`.run_config` and :mod:`.training`).

::

    from mbpo_cli import api

    run = api.train(preset="inverted_pendulum", steps=3000, sac__lr=3e-4)   # a Run handle
    run.status, run.final_eval_return, run.best_eval_return, run.run_dir
    rows = api.metrics(run.id, keys=["eval_return", "alpha"])              # [{"step": 250, ...}, ...]
    policy = api.load_policy(run.id, checkpoint="best")
    action = policy.predict(obs)                                            # in the task's action range
    api.resume(run.id, steps=5000)

Names:

- :func:`train`: a run from a preset, a config (a `Config` object or a YAML file), a gymnasium id, or an environment
  factory or instance, with keyword overrides (``sac__lr=3e-4`` for ``sac.lr``); returns a :class:`Run`.
- :func:`resume`: continue a run (more steps with `steps`); returns a :class:`Run`.
- :func:`load_policy`: a run's :class:`Policy` at a checkpoint (``latest``, ``best`` or an env step), whose
  ``predict(obs, deterministic=True)`` acts in the task's action range, for one observation or a batch.
- :func:`metrics`: a run's metrics as a list of dicts, one per env step (``{"step": 300, "eval_return": ...}``);
  :func:`metrics_frame`: the same as a pandas DataFrame (the `pandas` extra).
- :func:`runs`: the runs of a runs directory (or of one group), newest first, as :class:`Run` handles.
- :class:`Run`, :class:`Policy`: the handles; :data:`RunStatus`: a run's status.
- Errors: bad arguments raise a `ValueError` (:class:`ConfigError` for the config, :class:`EnvError` for the
  environment); :class:`RegistryError` (no such run), :class:`RunError` and :class:`CheckpointError` are refusals
  about a run (one that is still running, a checkpoint that fails its checksum).

Every function takes `runs_dir` (default ``runs``, as the command line's); ``$MBPO_REGISTRY_URL`` names another
registry as it does for the command line.
"""

from mbpo_cli.api.policy import Policy, load_policy
from mbpo_cli.api.records import Run, metrics, metrics_frame, runs
from mbpo_cli.api.training import resume, train
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.envs import EnvError
from mbpo_cli.runs.checkpoint import CheckpointError
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.registry import RegistryError, RunStatus

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "EnvError",
    "Policy",
    "RegistryError",
    "Run",
    "RunError",
    "RunStatus",
    "load_policy",
    "metrics",
    "metrics_frame",
    "resume",
    "runs",
    "train",
]
