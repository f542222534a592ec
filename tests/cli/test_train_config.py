"""The CLI's config path (issue 23): what a message says about a value depends on where the value came from (the
provenance resolution returns), and a `--config` run records the preset its file builds on."""

import json
from pathlib import Path

import pytest
import torch
from clihelpers import TINY, mbpo, one_error_line

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
MISSING_CUDA = "cuda:0: device 'cuda:0' requested but CUDA is not available here"


@NO_CUDA
@pytest.mark.parametrize("command", [["train", "--preset", "hopper", "--print-config"],
                                     ["bench", "--preset", "inverted_pendulum", "--steps", "1"]])
def test_a_missing_device_is_named_by_where_it_was_set(tmp_path: Path, command: list[str]) -> None:
    """`--device` when the flag set it, `train.device` when a file or --set did (bench said `--device` for both)."""
    assert one_error_line(mbpo(tmp_path, *command, "--device", "cuda:0")) == f"error: --device {MISSING_CUDA}"
    line = one_error_line(mbpo(tmp_path, *command, "--set", "train.device=cuda:0"))
    assert line == f"error: train.device {MISSING_CUDA}"


def test_the_env_note_explains_a_default_not_a_choice(tmp_path: Path) -> None:
    """`--env` says which termination the task gets and why, unless the command line chose it."""
    note = "env.termination: learned (CartPole-v1 has no known termination function"
    chosen = mbpo(tmp_path, "train", "--env", "CartPole-v1", "--print-config")
    assert chosen.exit_code == 0, chosen.output
    assert chosen.stderr.startswith(note)
    told = mbpo(tmp_path, "train", "--env", "CartPole-v1", "--set", "env.termination=learned", "--print-config")
    assert told.exit_code == 0, told.output
    assert note not in told.stderr and told.stdout == chosen.stdout


def test_a_config_run_records_the_preset_its_file_builds_on(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("base: inverted_pendulum\n")
    args = ["--config", str(config), *TINY[2:]]
    result = mbpo(tmp_path / "runs", "train", *args, "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(mbpo(tmp_path / "runs", "runs", "show", json.loads(result.stdout)["id"], "--json").stdout)
    assert run["preset"] == "inverted_pendulum"
