"""Tests for reading a user's YAML (mbpo_cli.config.yaml_reader.ConfigLoader): duplicate and non-string keys, nesting,
alias expansion and huge integers are refused in one bounded line naming the file and the line."""

from pathlib import Path

import pytest

from mbpo_cli.config.errors import MAX_ECHO, ConfigError, clip
from mbpo_cli.config.load import load_config
from mbpo_cli.config.overrides import parse_override
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.config.validation import build_config
from mbpo_cli.config.yaml_reader import MAX_YAML_DEPTH


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _load_error(path: Path) -> str:
    """The one-line message of the ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 500, message
    return message


def billion_laughs() -> str:
    """A few hundred bytes of nested aliases in env.kwargs that expand to 9**9 strings."""
    lines = ["base: inverted_pendulum", "env:", "  kwargs:", "    a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    lines += [f"    {n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    return "\n".join(lines) + "\n"


def test_a_second_section_is_refused_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "dup.yaml", "base: inverted_pendulum\ntrain:\n  steps: 700\nmodel:\n  hidden: 32\n"
                                         "train:\n  seed: 3\n")
    assert _load_error(path) == f"{path}: line 6: duplicate key 'train' (first at line 2)"


def test_a_duplicate_key_inside_a_section_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "dup.yaml", "train:\n  steps: 700\n  seed: 1\n  steps: 800\n")
    assert _load_error(path) == f"{path}: line 4: duplicate key 'steps' (first at line 2)"


def test_a_duplicate_in_a_base_file_names_that_file(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.yaml", "model:\n  hidden: 32\n  hidden: 64\n")
    path = _write(tmp_path / "mine.yaml", "base: base.yaml\n")
    assert _load_error(path) == f"{base}: line 3: duplicate key 'hidden' (first at line 2)"


def test_merge_keys_still_work_and_the_own_key_wins(tmp_path: Path) -> None:
    path = _write(tmp_path / "merge.yaml", "sac: &net\n  hidden: 64\n  layers: 3\ntd3:\n  <<: *net\n  hidden: 32\n")
    config = load_config(path)
    assert (config.sac.hidden, config.td3.hidden, config.td3.layers) == (64, 32, 3)


def test_a_duplicate_key_in_a_set_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--set env.kwargs: duplicate key 'a'"):
        parse_override("env.kwargs={a: 1, a: 2}")


@pytest.mark.parametrize(("text", "line", "key"), [
    ("base: inverted_pendulum\nenv:\n  kwargs:\n    1: a\n    b: c\n", 4, "1"),
    ("base: inverted_pendulum\ntrain:\n  b: c\n  1: a\n", 4, "1"),
    ("train:\n  on: 3\n", 2, "True"),
])
def test_a_key_that_is_not_a_string_is_refused(tmp_path: Path, text: str, line: int, key: str) -> None:
    path = _write(tmp_path / "keys.yaml", text)
    assert _load_error(path) == f"{path}: line {line}: key {key} is not a string (quote it)"


def test_mixed_keys_from_elsewhere_are_an_unknown_key_not_a_type_error() -> None:
    with pytest.raises(ConfigError, match=r"train\.1: unknown key"):
        build_config({"train": {1: "a", "b": "c"}})


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "deep.yaml", "train:\n  steps: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert _load_error(path) == f"{path}: line 2: nested more than {MAX_YAML_DEPTH} levels deep"


def test_a_set_key_nested_too_deep_is_refused() -> None:
    with pytest.raises(ConfigError, match=f"nested more than {MAX_YAML_DEPTH} levels deep$") as info:
        parse_override("env.kwargs." + "a." * 3000 + "b=1")
    assert len(str(info.value)) < 300


def test_an_anchor_bomb_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "bomb.yaml", billion_laughs())
    assert len(path.read_bytes()) < 600
    assert _load_error(path) == f"{path}: line 9: more than 100,000 values once its aliases are expanded"


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    path = _write(tmp_path / "alias.yaml", "model:\n  weight_decay: &wd [0.0, 0.0, 0.0, 0.0, 0.0]\n"
                                           "diagnostics:\n  enabled: false\nenv:\n  kwargs: {copy: *wd}\n")
    assert load_config(path).env.kwargs == {"copy": [0.0] * 5}


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "loop.yaml", "env:\n  kwargs: &a\n    x: *a\n")
    assert _load_error(path) == f"{path}: line 3: an alias inside the collection it names (a recursive alias)"


@pytest.mark.parametrize("digits", ["1" * 5000, "0x" + "f" * 5000])
def test_a_huge_integer_is_refused_in_a_file_and_in_set(tmp_path: Path, digits: str) -> None:
    path = _write(tmp_path / "int.yaml", f"train:\n  steps: {digits}\n")
    assert _load_error(path) == f"{path}: line 2: integer too large (more than 1024 bits)"
    with pytest.raises(ConfigError, match=r"^--set train.steps: integer too large"):
        resolve_config(preset="hopper", overrides=[f"train.steps={digits}"])


def test_long_values_are_echoed_clipped() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(preset="hopper", overrides=["env.termination=" + "x" * 5000])
    assert len(str(info.value)) < 2 * MAX_ECHO + 200 and "…" in str(info.value)
    with pytest.raises(ConfigError) as info:
        resolve_config(preset="hopper", overrides=["train." + "k" * 5000 + "=1"])
    assert len(str(info.value)) < 2 * MAX_ECHO + 200 and "…" in str(info.value)


def test_clip() -> None:
    assert clip("short") == "short"
    assert clip("x" * 500) == "x" * (MAX_ECHO - 1) + "…"
    assert clip("abcdef", 4) == "abc…"
