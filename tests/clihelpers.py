"""Shared helpers for the in-process CLI tests."""

from pathlib import Path

from typer.testing import CliRunner, Result

from mbpo_cli.cli.app import app

runner = CliRunner()


def mbpo(runs_dir: Path, *args: str, input: str | None = None) -> Result:
    """Invoke the CLI in-process with --runs-dir."""
    return runner.invoke(app, ["--runs-dir", str(runs_dir), *args], input=input)


def one_error_line(result: Result, code: int = 2) -> str:
    """The single stderr line of a failed command (exit `code`: 2 for bad input), no traceback, nothing else."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
