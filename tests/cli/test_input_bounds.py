"""Hostile or careless input reaches the user as one bounded line on stderr, exit 2: duplicate YAML keys, keys
that are not strings, deep nesting, an anchor bomb, a huge value echoed by the environment, a registry URL whose
port is not a number (issue 27, findings 7 and 9); a run that would only explore is warned about (finding 13)."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from clihelpers import TINY, mbpo, one_error_line, train_runs

from mbpo_cli.cli.common import MAX_ERROR_CHARS

LINE_BOUND = MAX_ERROR_CHARS + len("error: ")


def _file(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _bomb() -> str:
    """About 400 bytes of nested aliases in env.kwargs, expanding to 9**9 strings (a "billion laughs")."""
    lines = ["base: inverted_pendulum", "env:", "  kwargs:", "    a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    lines += [f"    {n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    return "\n".join(lines) + "\n"


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "a second train section": (
        lambda t: ["train", "--config", _file(t, "dup.yaml", "base: hopper\ntrain:\n  steps: 7\ntrain:\n  seed: 1\n")],
        "dup.yaml: line 4: duplicate key 'train' (first at line 2)",
    ),
    "a duplicate key in a --set mapping": (
        lambda t: ["train", "--preset", "hopper", "--set", "env.kwargs={a: 1, a: 2}"], "--set env.kwargs: duplicate",
    ),
    "mixed int and string keys": (
        lambda t: ["train", "--config", _file(t, "keys.yaml", "base: hopper\ntrain:\n  b: c\n  1: a\n")],
        "keys.yaml: line 4: key 1 is not a string (quote it)",
    ),
    "20,000-deep nesting": (
        lambda t: ["train", "--config", _file(t, "deep.yaml", "train:\n  steps: " + "[" * 20_000 + "]" * 20_000)],
        "deep.yaml: line 2: nested more than 64 levels deep",
    ),
    "an anchor bomb in env.kwargs": (
        lambda t: ["train", "--config", _file(t, "bomb.yaml", _bomb())],
        "bomb.yaml: line 9: more than 100,000 values once its aliases are expanded",
    ),
    "a huge value that the environment echoes": (
        lambda t: ["train", "--config", _file(t, "kw.yaml", "base: hopper\nenv:\n  kwargs:\n    no_such_option: "
                                                            + str(list(range(5000))))],
        "bad env.kwargs",
    ),
    "a huge integer": (
        lambda t: ["train", "--preset", "hopper", "--set", "train.steps=" + "9" * 5000], "integer too large",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_bounded_line(tmp_path: Path, case: str) -> None:
    """(With --print-config, input that was wrongly accepted prints the config rather than starting a run.)"""
    make_args, expected = CASES[case]
    result = mbpo(tmp_path / "runs", *make_args(tmp_path), "--print-config")
    line = one_error_line(result)
    assert expected in line
    assert len(line) <= LINE_BOUND
    assert not (tmp_path / "runs").exists()


def test_a_registry_url_whose_port_is_not_a_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBPO_REGISTRY_URL", "postgresql://u:secret@host:notaport/db")
    for args in (["runs", "list"], ["train", *TINY]):
        line = one_error_line(mbpo(tmp_path / "runs", *args))
        assert line == ("error: cannot use registry URL (see $MBPO_REGISTRY_URL): its port is not a number (a user "
                        "name or password with '@', ':' or '/' must be percent-encoded)")
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_a_duplicate_key_in_the_runs_config_yaml(tmp_path: Path) -> None:
    """The run's config.yaml is the user's to edit: it is read as strictly as a config file."""
    run_id = train_runs(tmp_path, {"dup": TINY})["dup"]
    config_file = tmp_path / run_id / "config.yaml"
    config_file.write_text(config_file.read_text() + "train:\n  steps: 400\n")
    line = one_error_line(mbpo(tmp_path, "resume", run_id, "--steps", "400"))
    assert line.startswith(f"error: {config_file}: line ") and "duplicate key 'train' (first at line " in line


def test_a_run_that_only_explores_is_warned_about_on_stderr(tmp_path: Path) -> None:
    result = mbpo(tmp_path / "runs", "train", "--preset", "hopper", "--steps", "5000", "--print-config")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == ("warning: train.steps 5,000 <= train.init_steps 5,000: every step is random "
                                     "exploration and the agent never trains; lower train.init_steps (--set "
                                     "train.init_steps=N) or raise --steps")
    assert yaml.safe_load(result.stdout)["train"]["init_steps"] == 5000


def test_the_readme_env_example_explores_a_tenth_and_is_evaluated_as_it_goes(tmp_path: Path) -> None:
    """`mbpo train --env Pendulum-v1 --steps 5000` (the README's example): 500 random steps, epochs of 250, no
    warning."""
    result = mbpo(tmp_path / "runs", "train", "--env", "Pendulum-v1", "--steps", "5000", "--print-config")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    train = yaml.safe_load(result.stdout)["train"]
    assert (train["steps"], train["init_steps"], train["epoch_length"]) == (5000, 500, 250)
