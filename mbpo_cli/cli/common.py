"""What every command shares: consoles, error handling, registry access, common options."""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from mbpo_cli.api.run_config import checked_config
from mbpo_cli.cli.display import Output, summary_table
from mbpo_cli.cli.fit import Col, Fit, compact, fitted
from mbpo_cli.config import metrics as metric_keys
from mbpo_cli.config.errors import ConfigError, clip
from mbpo_cli.config.files import preset_names
from mbpo_cli.config.resolve import Resolved
from mbpo_cli.engine.envs import EnvError
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.models.termination.custom import CustomFunctionError
from mbpo_cli.runs.checkpoint import CheckpointError
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import registry_file, run_dir
from mbpo_cli.runs.registry import URL_ENV_VAR, Registry, RegistryError, RegistryLost, RunStatus, sanitize_name
from mbpo_cli.runs.session import Outcome

out = Output()
err = Output(stderr=True, emoji=False)  # an error echoes ids such as `module:EnvId`: `:b:` stays text

USER_ERRORS = (ConfigError, EnvError, RegistryError, RunError, CheckpointError, CustomFunctionError)
"""Bad input, exit 2 (a custom function that misbehaves mid-run is the user's to fix, as at start)."""
MAX_ERROR_CHARS = 1000
"""Longest error line printed: a message that echoes a huge value (an environment's kwargs, a database's
reply) is cut there, ending in "…"."""


def error_line(error: BaseException) -> str:
    """The message of `error` as one line of at most :data:`MAX_ERROR_CHARS` characters."""
    return clip(" ".join(str(error).strip().splitlines()), MAX_ERROR_CHARS)


@dataclass
class Globals:
    """Options shared by every command."""

    runs_dir: Path
    debug: bool
    registry_warned: bool = False
    """Whether this command already printed the registry's warning (it may open the registry more than once)."""


@contextmanager
def handled(ctx: typer.Context) -> Iterator[None]:
    """Bad input: one line on stderr, exit 2. Internal failure: one line, exit 1. Tracebacks with --debug."""
    debug = ctx.obj.debug if isinstance(ctx.obj, Globals) else False
    try:
        with stdout_for_the_result(ctx.params.get(JSON_PARAM) is True):
            yield
    except (typer.Exit, typer.Abort):
        raise
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/] {escape(error_line(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except NumericalError as error:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/] numerical failure: {escape(error_line(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except RegistryLost as error:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/] {escape(error_line(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # the reader of stdout went away (`mbpo runs list --json | head`): stop quietly, as other tools do
        release_closed_outputs()
        raise typer.Exit(1) from None
    except Exception as error:
        if debug:
            traceback.print_exc()
        first = str(error).strip().splitlines()
        err.print(f"[red]error:[/] {type(error).__name__}: {escape(clip(first[0], MAX_ERROR_CHARS)) if first else ''} "
                  "(rerun with --debug for the traceback)", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def release_closed_outputs() -> None:
    """Point stdout and stderr at /dev/null where their reader has gone, so that no later write or the flush at
    exit fails (which would print a traceback and change the exit status)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


_write_result: Callable[[str], None] | None = None
"""Where `emit_json` and `emit_yaml` write while `stdout_for_the_result` holds stdout (None: sys.stdout)."""


@contextmanager
def stdout_for_the_result(active: bool) -> Iterator[None]:
    """While `active` (a command given --json, `handled` decides), stdout carries the command's result and nothing
    else: whatever else is written to it, by user code (a custom termination or reward function that prints), a
    library or a child process, goes to stderr.

    File descriptor 1 is pointed at stderr for the duration, sys.stdout with it, and the result is written to a
    private duplicate of the real stdout; both are put back at the end. Where stdout has no file descriptor (an
    in-process test's capture), sys.stdout alone is redirected.
    """
    global _write_result
    if not active or _write_result is not None or sys.stdout is None:  # None: started with stdout closed
        yield
        return
    original = sys.stdout
    with suppress(OSError, ValueError):
        original.flush()
        sys.stderr.flush()
    try:
        out_fd, err_fd = original.fileno(), sys.stderr.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both: a stream that is not a file
        out_fd = err_fd = -1
    private = os.dup(out_fd) if out_fd >= 0 else -1
    _write_result = _fd_writer(private) if private >= 0 else _stream_writer(original)
    if private >= 0:
        os.dup2(err_fd, out_fd)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        for stream in (sys.stderr, original):  # what a library wrote through the original object: to stderr too
            with suppress(OSError, ValueError):
                stream.flush()
        sys.stdout = original
        if private >= 0:
            os.dup2(private, out_fd)
            os.close(private)
        _write_result = None


def _fd_writer(fd: int) -> Callable[[str], None]:
    """Writes text to `fd` whole; a reader that went away raises BrokenPipeError once, later writes vanish."""

    def write(text: str) -> None:
        data = text.encode()
        try:
            while data:
                data = data[os.write(fd, data):]
        except BrokenPipeError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
            raise

    return write


def _stream_writer(stream: Any) -> Callable[[str], None]:
    """Writes text to `stream`, flushed."""

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def write_result(text: str) -> None:
    """Write (part of) a command's result, its JSON, YAML or CSV, to stdout, flushed, even while
    `stdout_for_the_result` holds stdout for it."""
    if _write_result is not None:
        _write_result(text)
    elif sys.stdout is not None:  # as print(), nothing where the process started with stdout closed
        sys.stdout.write(text)
        sys.stdout.flush()


class ResultOutput:
    """A file-like `write` for a command's result (a CSV writer's stream): `write_result`."""

    def write(self, text: str) -> int:
        write_result(text)
        return len(text)


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    """One JSON object on stdout (valid JSON: non-finite numbers become null), flushed."""
    write_result(json.dumps(_finite(data), allow_nan=False) + "\n")


def emit_yaml(data: Any) -> None:
    """Print `data` as block YAML, keys in their order."""
    write_result(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def note_renamed(name: str | None, what: str) -> None:
    """Say on stderr when a user-given name is stored in another spelling (names are also folder names)."""
    if name is None:
        return
    stored = sanitize_name(name)
    if stored != name:
        err.print(f"note: {what} {name!r} is stored as {stored!r} (names keep letters, digits, '.', '_' and '-')",
                  highlight=False, markup=False, soft_wrap=True)


def open_registry(ctx: typer.Context, read_only: bool = False) -> Registry:
    """The registry of the chosen runs directory (`read_only` for commands that only read: a registry on storage
    this process cannot write is still readable). Its warning (a SQLite file on a network filesystem) goes to
    stderr, once per command."""
    registry = Registry.open(ctx.obj.runs_dir, read_only=read_only)
    if registry.warning is not None and not ctx.obj.registry_warned:
        ctx.obj.registry_warned = True
        err.print(f"warning: {registry.warning}", highlight=False, markup=False, soft_wrap=True)
    return registry


def existing_registry(ctx: typer.Context, read_only: bool = False) -> Registry | None:
    """The registry if it exists; None (and nothing created) when the default SQLite file is not there yet."""
    if not os.environ.get(URL_ENV_VAR) and not registry_file(ctx.obj.runs_dir).is_file():
        return None
    return open_registry(ctx, read_only)


def registry_of(ctx: typer.Context, ref: str, read_only: bool = False) -> Registry:
    """The existing registry for a command about run `ref`; a missing registry means no such run."""
    registry = existing_registry(ctx, read_only)
    if registry is None:
        raise RegistryError(f"no run {ref!r}: there is no registry at {registry_file(ctx.obj.runs_dir)}")
    return registry


def run_summary(outcome: Outcome, runs_dir: Path) -> dict[str, Any]:
    """What `train` and `resume` say at the end (the table, or the JSON object); the last evaluation's return is
    `final_eval_return` for a finished run, `last_eval_return` for one that stopped before its end."""
    run = outcome.run
    metrics = outcome.last_metrics
    steps = outcome.env_steps_this_session
    return {
        "id": run.id,
        "name": run.name,
        "status": outcome.status,
        "env": run.env_id,
        "algo": run.algo,
        "seed": run.seed,
        "env_steps": run.env_steps,
        "final_eval_return" if outcome.status == RunStatus.FINISHED else "last_eval_return":
            metrics.get(metric_keys.EVAL_RETURN),
        "best_eval_return": outcome.best_eval,
        "wall_seconds": round(outcome.wall_seconds, 2),
        "session_seconds": round(outcome.session_seconds, 2),
        "steps_per_second": round(steps / max(outcome.session_seconds, 1e-9), 2) if steps else 0.0,
        "run_dir": str(run_dir(runs_dir, run.id)),
    }


def finish(outcome: Outcome, ctx: typer.Context, as_json: bool) -> None:
    """Print the run's summary and exit with its status (130/143 after a stop signal, even when the output
    cannot be written any more: the run, its checkpoint and its status stand)."""
    summary = run_summary(outcome, ctx.obj.runs_dir)
    try:
        if as_json:
            emit_json(summary)
        else:
            out.print(summary_table(summary))
            if outcome.status == RunStatus.INTERRUPTED:
                out.print(f"Interrupted at env step {outcome.run.env_steps:,}. Continue with: "
                          f"[bold]mbpo resume {outcome.run.id}[/]")
    except OSError:
        pass  # the reader of the output went away (`mbpo train | tee` stopped): nothing left to tell
    release_closed_outputs()
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def pack_table(summaries: list[dict[str, Any]], width: int) -> Table:
    """The runs of a pack, a row each (id, name, seed, status, env steps, last and best evaluation), fitted to a
    terminal `width` columns wide: numbers whole, a long name shortened in the middle (`mbpo_cli.cli.fit`)."""
    columns = [Col("id", justify="left"), Col("name", Fit.NAME), Col("seed"), Col("status", Fit.WRAP),
               Col("env steps"), Col("last eval"), Col("best eval")]
    rows = []
    for s in summaries:
        last, best = s.get("final_eval_return", s.get("last_eval_return")), s["best_eval_return"]
        rows.append([s["id"], s["name"], str(s["seed"]), str(s["status"]), f"{s['env_steps']:,}",
                     "-" if last is None else f"{last:,.1f}", "-" if best is None else f"{best:,.1f}"])
    return fitted(compact(title="Pack summary", title_justify="left"), columns, rows, width)


def finish_pack(outcomes: list[Outcome], ctx: typer.Context, as_json: bool) -> None:
    """Print each run's summary of a pack (a JSON list with `--json`) and exit: 1 when a seed failed, else the
    pack's status (every seed stops together)."""
    summaries = [run_summary(outcome, ctx.obj.runs_dir) for outcome in outcomes]
    try:
        if as_json:
            emit_json(summaries)
        else:
            out.print(pack_table(summaries, out.width))
            first = outcomes[0]
            steps = first.env_steps_this_session
            rate = len(outcomes) * steps / max(first.session_seconds, 1e-9)
            out.print(f"{len(outcomes)} seeds in one process: {steps:,} env steps each in "
                      f"{first.session_seconds:,.1f} s ({rate:,.1f} env steps/s in all)", highlight=False)
            stopped = [o for o in outcomes if o.status == RunStatus.INTERRUPTED]
            if stopped:
                out.print(f"Interrupted at env step {stopped[0].run.env_steps:,}. Continue the pack with: "
                          f"[bold]mbpo resume {stopped[0].run.id}[/]")
    except OSError:
        pass  # the reader of the output went away: nothing left to tell
    release_closed_outputs()
    code = 1 if any(o.status == RunStatus.FAILED for o in outcomes) else max(o.exit_code for o in outcomes)
    if code:
        raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# train / resume
# ---------------------------------------------------------------------------------------------

PresetOpt = Annotated[str | None, typer.Option("--preset", help="A bundled preset: " + ", ".join(preset_names()))]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A YAML config file (may name a `base:` preset).")]
EnvOpt = Annotated[str | None, typer.Option("--env", help="Any gymnasium env id (Box or Discrete actions).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set model.ensemble_size=5.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and no progress display.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the output file if it exists (never the "
                                             "registry or a run's files, which are refused).")]
JSON_PARAM = "as_json"
"""The parameter name every command gives its `JsonOpt` (`handled` reads it to keep stdout for the JSON)."""


def build_train_config(preset: str | None, config: Path | None, env: str | None, sets: list[str] | None, *,
                       seed: int | None = None, steps: int | None = None, device: str | None = None,
                       algo: str | None = None, tensorboard: bool | None = None,
                       track: bool | None = None) -> Resolved:
    """Resolve the config and check the task (device, environment, agent, custom functions) before anything is
    written, as `mbpo_cli.api.train` does (:func:`mbpo_cli.api.run_config.checked_config`).

    `--env ENV_ID` says on stderr which termination the task gets and why (unless the command line set it); a Dict
    or Tuple observation, that it is flattened and how; a run that would only explore (steps <= init_steps) is warned
    about on stderr.
    """
    return checked_config(preset=preset, config_file=config, env_id=env, sets=sets, seed=seed, steps=steps,
                          device=device, algo=algo, tensorboard=tensorboard, track=track, say=note)


def note(line: str) -> None:
    """A note for the user, one line on stderr."""
    err.print(line, highlight=False, markup=False, soft_wrap=True)
