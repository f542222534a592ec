"""Layer 6: the `mbpo` command line, one module per command, calling the layers below.

`main` is the console script. It imports the app (torch, gymnasium and the rest take seconds) inside a guard,
so that a Ctrl-C during those imports ends with one line, not a traceback.
"""

import sys


def main() -> None:
    """Console-script entry point."""
    try:
        from mbpo_cli.cli.app import app
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    app()
