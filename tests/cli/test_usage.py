"""The command line as a user meets it before any run: usage errors in one line, help without `<bool>` beside
flags, shell completion, `mbpo presets`, and `train --print-config`."""

import json
from pathlib import Path

import pytest
import yaml
from clihelpers import runner

from mbpo_cli.cli import run
from mbpo_cli.cli.app import app
from mbpo_cli.config.files import preset_names
from mbpo_cli.config.resolve import resolve_config


@pytest.mark.parametrize(("args", "expected"), [
    (["train", "--stepz", "3"], "error: mbpo train: No such option: --stepz"),
    (["runs", "show"], "error: mbpo runs show: Missing argument 'run'."),
    (["trian"], "error: mbpo: No such command 'trian'. Did you mean 'train'?"),
    (["eval", "x", "--episodes", "many"], "error: mbpo eval: Invalid value for '--episodes'"),
])
def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                              expected: str) -> None:
    assert run(app, args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), captured.err
    assert "╭" not in captured.err and "Usage:" not in captured.err


def test_a_command_without_arguments_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(app, ["runs"]) == 2
    captured = capsys.readouterr()
    assert "list" in captured.out + captured.err and "error" not in captured.err


@pytest.mark.parametrize("command", [[], ["train"], ["runs", "list"], ["ablate"], ["eval"], ["compare"]])
def test_flags_show_no_value_placeholder(command: list[str]) -> None:
    text = runner.invoke(app, [*command, "--help"], terminal_width=160).stdout
    assert "--help" in text
    assert "<bool>" not in text
    assert "<int>" in text or "<path>" in text or "<str>" in text  # options that take a value keep theirs


def test_shell_completion_is_offered() -> None:
    text = runner.invoke(app, ["--help"], terminal_width=160).stdout
    assert "--install-completion" in text and "--show-completion" in text


def test_ablate_help_names_the_default_group() -> None:
    text = runner.invoke(app, ["ablate", "--help"], terminal_width=200).stdout
    assert "PRESET-ablation-HASH" in text and "(default: -ablation-)" not in text


def test_presets_lists_every_preset_with_its_task() -> None:
    result = runner.invoke(app, ["presets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == preset_names()
    assert rows["hopper"]["env_id"] == "Hopper-v5" and rows["hopper"]["rollout_schedule"] == [20, 150, 1, 15]
    table = runner.invoke(app, ["presets"], terminal_width=160).stdout
    assert all(name in table for name in preset_names())


def test_print_config_prints_the_resolved_config_and_starts_no_run(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    result = runner.invoke(app, ["--runs-dir", str(runs_dir), "train", "--preset", "hopper", "--seed", "4",
                                 "--set", "model.hidden=64", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    expected = resolve_config(preset="hopper", seed=4, overrides=["model.hidden=64"]).to_dict()
    assert printed == expected
    assert not runs_dir.exists()
