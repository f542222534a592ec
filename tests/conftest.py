"""Shared by every test folder: this folder on `sys.path` (for `clihelpers` and `servers`), one torch thread per test
process, no registry location from the environment, and a real PostgreSQL server for the tests that ask for one.

The suite runs one process per core (pytest-xdist); one thread each keeps them from competing for the cores,
and the variable reaches the `mbpo` subprocesses the tests start. Small networks run as fast on one thread
as on two here (benchmarks/RESULTS.md).
"""

import itertools
import os
from collections.abc import Iterator

import pytest
import servers
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No registry URL or runs dir from the environment; torch's thread count restored after runs that set it."""
    monkeypatch.delenv("MBPO_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MBPO_RUNS_DIR", raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list) -> None:
    """The slow (learning) tests first: with one process per core, the longest start at once and the many short
    tests fill in around them, so the suite takes about its longest test or half its total, not their sum."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.PostgresServer]:
    """One PostgreSQL server per test process (started on first use, stopped at the end); skips where the
    binaries or the driver are missing."""
    servers.skip_unless_available(servers.missing_reason())
    server = servers.start_postgres()
    yield server
    server.stop()


_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: servers.PostgresServer) -> str:
    """The SQLAlchemy URL of a new, empty database on the test process's PostgreSQL server."""
    return postgres_server.create_database(f"mbpo_test_{os.getpid()}_{next(_databases)}")
