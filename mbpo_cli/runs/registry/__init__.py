"""The run registry: every run, its metrics, checkpoints and evaluations in one SQL database.

- :mod:`.store`: :class:`Registry`, the store callers use;
- :mod:`.records`: the frozen records it returns, a run's status (:class:`RunStatus`, :class:`ShownStatus`) and the
  rules for run names;
- :mod:`.tables`: the SQL tables;
- :mod:`.database`: the connection, its transactions and what its errors mean;
- :mod:`.sqlite`: a SQLite file's plumbing (its folder, network filesystems, concurrent writers);
- :mod:`.location`: where the registry is (``$MBPO_REGISTRY_URL`` or the runs directory's file);
- :mod:`.credentials`: URLs and errors with their secrets hidden;
- :mod:`.errors`: the exceptions callers catch.
"""

from mbpo_cli.runs.registry.errors import RegistryError, RegistryLost, RegistryUnavailable
from mbpo_cli.runs.registry.location import URL_ENV_VAR, default_url
from mbpo_cli.runs.registry.records import (
    RUN_STATUSES,
    CheckpointInfo,
    CheckpointLabel,
    EvalInfo,
    RunInfo,
    RunStatus,
    ShownStatus,
    is_stale,
    sanitize_name,
)
from mbpo_cli.runs.registry.store import Registry

__all__ = [
    "RUN_STATUSES",
    "URL_ENV_VAR",
    "CheckpointInfo",
    "CheckpointLabel",
    "EvalInfo",
    "Registry",
    "RegistryError",
    "RegistryLost",
    "RegistryUnavailable",
    "RunInfo",
    "RunStatus",
    "ShownStatus",
    "default_url",
    "is_stale",
    "sanitize_name",
]
