"""Every example in the help of `mbpo` and of each of its commands runs, against a runs directory of tiny trained
runs: its syntax, option names and keys are accepted.

The placeholders of the examples (`3f9a1c2e`, `hopper-seeds`, ...) become the tiny runs' ids, names and groups.
An example that would train or time for minutes runs with `--print-config` (train) or `--dry-run` (ablate), which
resolve and check everything it names; the few that cannot run here at all are parsed by Click, with their
`--set` keys checked against the config.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
import typer
from clihelpers import TINY, mbpo, train_runs

from mbpo_cli.cli.app import app
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.runs.registry import Registry

SHELL = {">", "|", "&&", ";"}
"""Where an example's `mbpo` command ends and the shell takes over (`--csv > metrics.csv`, `| head`)."""

PARSE_ONLY = {
    "bench": "times hopper-sized components and minutes of training (tests/cli/test_bench.py runs it small)",
    "ablate --resume": "continues an ablation's runs, which execute as separate processes",
    "ablate --address": "joins a Ray cluster that is not there",
    "eval --video": "films with imageio-ffmpeg and a rendering backend, optional extras",
    "tune": "runs a study's trials as separate processes for minutes (tests/sweeps/test_tune.py runs a small one)",
}
"""Examples (by command and option) that cannot run in seconds here, and why: they are parsed only."""

NEEDS_EXTRA = {
    "--format onnx": ("onnxruntime", "onnx"),
    "--executor ray": ("ray", "ray"),
    "--track": ("wandb", "wandb"),
}
"""Examples (by an option and its value) that need an optional extra: (its module, the extra's name)."""


def missing_extra(args: list[str]) -> str | None:
    """The extra an example needs and this environment lacks (None: it has what the example needs). Where
    $MBPO_REQUIRE_SERVERS is set (`.ci/run`), every extra counts as present, so a missing one fails the example."""
    if os.environ.get(servers.REQUIRE_SERVERS):
        return None
    text = " ".join(args)
    for option, (module, extra) in NEEDS_EXTRA.items():
        if option in text and importlib.util.find_spec(module) is None:
            return extra
    return None


def _commands(command: Any, path: tuple[str, ...] = ("mbpo",)) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, Click command) of `mbpo` and every command and group below it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def help_examples() -> list[str]:
    """Every example command line of every help text, in order, once each: the `mbpo ...` spans in backticks
    after "Example:" or "Examples:", else the lines there that start with `mbpo `."""
    examples = []
    for _, command in _commands(typer.main.get_command(app)):
        found = re.search(r"Examples?:", command.help or "")
        if found is None:
            continue
        tail = (command.help or "")[found.end():]
        examples += re.findall(r"`(mbpo [^`]+)`", tail) or [
            line.strip() for line in tail.splitlines() if line.strip().startswith("mbpo ")]
    return list(dict.fromkeys(examples))


def arguments(example: str, placeholders: dict[str, str]) -> list[str]:
    """The `mbpo` arguments of an example: without its comment, the shell around it, and placeholders."""
    words = shlex.split(example, comments=True)
    ends = [i for i, word in enumerate(words) if word in SHELL]
    return [placeholders.get(word, word) for word in words[1:ends[0] if ends else None]]


def parse_only_reason(args: list[str]) -> str | None:
    for key, reason in PARSE_ONLY.items():
        command, *option = key.split()
        if args[0] == command and all(o in args for o in option):
            return reason
    return None


def runnable(args: list[str]) -> list[str]:
    """The arguments to run: training and ablations stop once their config is resolved and checked."""
    if args[0] == "train":
        return [*args, "--print-config"]
    if args[0] == "ablate" and "--dry-run" not in args:
        return [*args, "--dry-run"]
    return args


def parse(args: list[str], runs_dir: Path) -> None:
    """Parse `args` as the command line would (Click's make_context, down the command groups), and resolve each
    `--set KEY=VALUE` with the example's preset: unknown options or keys raise."""
    command: Any = typer.main.get_command(app)
    context = command.make_context("mbpo", ["--runs-dir", str(runs_dir), *args])
    while hasattr(command, "commands"):  # a group: the command it names parses the rest
        name, command, rest = command.resolve_command(context, [*context._protected_args, *context.args])
        context = command.make_context(name, rest, parent=context)
    preset = args[args.index("--preset") + 1] if "--preset" in args else "hopper"
    for i, word in enumerate(args[:-1]):
        if word == "--set":
            resolve_config(preset=preset, overrides=[args[i + 1]])


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Tiny runs and groups standing in for the examples' placeholders: two MBPO seeds in a group, a SAC run in
    another; the first one stopped after its last checkpoint (so `mbpo resume RUN` continues it)."""
    runs_dir = tmp_path_factory.mktemp("examples") / "runs"
    with Registry.open(runs_dir) as registry:
        registry.ensure_group("tiny-seeds", "seeds")
        registry.ensure_group("tiny-sac-seeds", "seeds")
    ids = train_runs(runs_dir, {"a": [*TINY, "--group", "tiny-seeds"],
                                "b": [*TINY, "--seed", "1", "--group", "tiny-seeds"],
                                "sac": [*TINY, "--algo", "sac", "--group", "tiny-sac-seeds"]})
    with Registry.open(runs_dir) as registry:
        registry.set_status(ids["a"], "interrupted")
    placeholders = {"3f9a1c2e": ids["a"], "8b7d6e5f": ids["b"], "1a2b3c4d": ids["sac"],
                    "hopper-mbpo-s0-3f9a1c2e": "tiny-a", "hopper-seeds": "tiny-seeds",
                    "hopper-sac-seeds": "tiny-sac-seeds",
                    "200000": "400"}  # `resume RUN --steps 200000`: 100 more steps, not 199,700
    return runs_dir, placeholders


def test_every_help_example_runs(runs: tuple[Path, dict[str, str]], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`runs metrics --help` showed `--keys model_loss,alpha`, which fails (the key is model_holdout_loss). Each
    example runs in a folder of its own (its output files land there); `runs delete` runs last."""
    runs_dir, placeholders = runs
    examples = help_examples()
    assert len(examples) >= 35
    assert all(any(parse_only_reason(arguments(e, placeholders)) == reason for e in examples)
               for reason in PARSE_ONLY.values()), "a parse-only rule matches no example any more"
    failures = []
    for n, example in enumerate(sorted(examples, key=lambda e: e.startswith("mbpo runs delete"))):
        args = arguments(example, placeholders)
        folder = tmp_path / f"example-{n}"
        folder.mkdir()
        monkeypatch.chdir(folder)
        if parse_only_reason(args) is not None or missing_extra(args) is not None:
            try:
                parse(args, runs_dir)
            except Exception as error:
                failures.append(f"{example}\n  parse: {type(error).__name__}: {error}")
            continue
        result = mbpo(runs_dir, *runnable(args))
        if result.exit_code != 0:
            failures.append(f"{example}\n  ran {shlex.join(runnable(args))}: exit {result.exit_code}: "
                            f"{result.output.strip()[:300]}")
    assert not failures, "\n".join(failures)


def test_a_wrong_key_or_option_in_an_example_fails(runs: tuple[Path, dict[str, str]]) -> None:
    """The test above can fail: the old `runs metrics` example, and a misspelt option or `--set` key."""
    runs_dir, placeholders = runs
    old = arguments("mbpo runs metrics 3f9a1c2e --keys model_loss,alpha --last 50", placeholders)
    assert mbpo(runs_dir, *old).exit_code == 2
    with pytest.raises(Exception, match="--sample"):
        parse(["bench", "--preset", "hopper", "--sample", "10"], runs_dir)
    with pytest.raises(Exception, match=r"model\.hiden"):
        parse(["bench", "--preset", "hopper", "--set", "model.hiden=3"], runs_dir)
