"""Where the registry is: `$MBPO_REGISTRY_URL` (any SQLAlchemy URL), else the SQLite file of the runs directory."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL

from mbpo_cli.runs.layout import registry_file

URL_ENV_VAR = "MBPO_REGISTRY_URL"


def default_url(runs_dir: Path) -> str:
    """``$MBPO_REGISTRY_URL`` if set, else the SQLite file ``<runs_dir>/registry.db``."""
    return os.environ.get(URL_ENV_VAR) or f"sqlite:///{registry_file(runs_dir).absolute()}"


def sqlite_file(parsed: URL) -> Path | None:
    """The database file of a SQLite URL, or None for other backends and in-memory databases."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
