"""Shared by every test folder: this folder on `sys.path` (for `clihelpers`), one torch thread per test process, and
no registry location from the environment.

The suite runs one process per core (pytest-xdist); one thread each keeps them from competing for the cores,
and the variable reaches the `mbpo` subprocesses the tests start. Small networks run as fast on one thread
as on two here (benchmarks/RESULTS.md).
"""

import os
from collections.abc import Iterator

import pytest
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
