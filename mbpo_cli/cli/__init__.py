"""Layer 7: the `mbpo` command line, one module per command, calling the layers below.

`main` is the console script. The imports of torch, gymnasium and the rest take seconds; a Ctrl-C or SIGTERM
then is only recorded (an exception raised inside a library's import could be caught and lost there), and
the command ends with one line after the imports, before doing anything. A usage error (an unknown option, a
missing argument) is one line too, like every other error of the CLI; a command given no arguments shows its
help.
"""

import signal
import sys
from types import FrameType
from typing import Any


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
    raise SystemExit(run(app))


def run(app: Any, args: list[str] | None = None) -> int:
    """Run the Typer `app` on `args` (default: the command line); the exit status."""
    import typer

    try:
        code = app(args=args, prog_name="mbpo", standalone_mode=False)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except typer.TyperException as error:  # Click's usage errors, through Typer's vendored Click
        context = getattr(error, "ctx", None)
        message = error.format_message()
        if type(error).__name__ == "NoArgsIsHelpError":  # Typer's Rich help is printed as it is made
            if message.strip():
                print(message, file=sys.stderr)
        else:
            where = f"{context.command_path}: " if context is not None else ""
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            print(f"error: {where}{' '.join(message.split())}{hint}", file=sys.stderr)
        return int(getattr(error, "exit_code", 2))
    return code if isinstance(code, int) else 0
