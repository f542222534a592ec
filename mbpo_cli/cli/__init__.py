"""Layer 6: the `mbpo` command line, one module per command, calling the layers below.

`main` is the console script. The imports of torch, gymnasium and the rest take seconds; a Ctrl-C or SIGTERM
then is only recorded (an exception raised inside a library's import could be caught and lost there), and
the command ends with one line after the imports, before doing anything.
"""

import signal
import sys
from types import FrameType


def main() -> None:
    """Console-script entry point."""
    received: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    from mbpo_cli.cli.app import app

    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if received:
        print("interrupted", file=sys.stderr)
        raise SystemExit(128 + received[0])
    app()
