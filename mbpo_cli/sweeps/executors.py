"""Where an ablation's runs execute: the executor protocol and the local-process executor.

Runs execute as separate `mbpo train` / `mbpo resume` processes; the scheduling in
`mbpo_cli.sweeps.ablation` only speaks to :class:`Executor`, so another executor (Ray, Slurm, ...) is added
here without touching the plan, the scheduling or the reporting.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

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

