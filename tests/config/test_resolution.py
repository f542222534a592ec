"""Resolution of the command line's config (issue 23): the flags are typed overrides applied once (never read back as
YAML), and resolution says where each value came from and which preset the config builds on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mbpo_cli.config.env_defaults import TaskFacts
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.mappings import leaf_keys
from mbpo_cli.config.provenance import DEFAULT, Origin, OriginKind
from mbpo_cli.config.resolve import Resolved, resolve, resolve_config
from mbpo_cli.config.schema import Config

FACTS = TaskFacts(3, 1, False, "never")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _value(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _defaults_are_defaults(resolved: Resolved) -> None:
    """Every value whose origin is the default holds the schema's default: provenance agrees with the config."""
    values, defaults = resolved.config.to_dict(), Config().to_dict()
    for key in leaf_keys(values):
        if resolved.provenance.of(key) == DEFAULT:
            assert _value(values, key) == _value(defaults, key), key


def test_each_value_says_where_it_came_from(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    middle = _write(sub / "middle.yaml", "base: ant\nmodel:\n  hidden: 64\n")
    top = _write(tmp_path / "top.yaml", "base: sub/middle.yaml\nmodel:\n  layers: 2\n  weight_decay: [0, 0, 0]\n")
    resolved = resolve(config_file=top, overrides=["train.threads=2", "env.kwargs={a: 1}", "sac.updates_per_step=3"],
                       seed=4, device="cpu", steps=9000, tensorboard=True, algo="sac")
    of = resolved.provenance.of
    assert of("model.layers") == of("model.weight_decay") == Origin(OriginKind.FILE, str(top))
    assert of("model.hidden") == Origin(OriginKind.FILE, str(middle))
    assert of("env.id") == of("rollout.schedule") == Origin(OriginKind.PRESET, "ant")
    assert of("train.threads") == of("env.kwargs") == of("agent.updates_per_step") == Origin(OriginKind.SET, "--set")
    for key, flag in (("train.seed", "--seed"), ("train.device", "--device"), ("train.steps", "--steps"),
                      ("train.tensorboard", "--tensorboard"), ("algo", "--algo"), ("agent.name", "--algo")):
        assert of(key) == Origin(OriginKind.FLAG, flag), key
    assert of("dqn.lr") == DEFAULT
    assert resolved.config.agent.updates_per_step == 3  # --set wins over --algo's G = 1
    assert resolved.preset == "ant"
    _defaults_are_defaults(resolved)


def test_a_section_replaced_on_the_command_line_forgets_the_files_origins() -> None:
    resolved = resolve(preset="humanoid", overrides=["model={layers: 2, weight_decay: [0, 0, 0]}"])
    assert resolved.config.model.hidden == 200 and resolved.provenance.of("model.hidden") == DEFAULT
    assert resolved.provenance.of("model.layers") == Origin(OriginKind.SET, "--set")
    _defaults_are_defaults(resolved)


def test_env_defaults_are_the_env_sources_until_set() -> None:
    resolved = resolve(env_id="Pendulum-v1", env_facts=FACTS, steps=5000)
    env = Origin(OriginKind.ENV, "--env Pendulum-v1")
    assert resolved.provenance.of("env.termination") == resolved.provenance.of("train.init_steps") == env
    assert resolved.provenance.of("train.steps") == Origin(OriginKind.FLAG, "--steps") and resolved.preset is None
    chosen = resolve(env_id="Pendulum-v1", env_facts=FACTS, overrides=["env.termination=never"])
    assert chosen.provenance.of("env.termination") == Origin(OriginKind.SET, "--set")
    _defaults_are_defaults(resolved)


def test_the_preset_a_config_builds_on_comes_with_the_config(tmp_path: Path) -> None:
    """What the run records as its preset: --preset's, or the nearest one named in a file's base: chain."""
    assert resolve(preset="hopper").preset == "hopper"
    plain = _write(tmp_path / "plain.yaml", "train:\n  steps: 7\n")
    assert resolve(config_file=plain).preset is None
    _write(tmp_path / "middle.yaml", "base: walker2d\n")
    top = _write(tmp_path / "top.yaml", "base: middle.yaml\n")
    assert resolve(config_file=top).preset == "walker2d"


def test_flags_are_typed_values_not_yaml_text() -> None:
    """`--device 1:30` was read back as YAML (the integer 90, in base 60); `--device yes` as true."""
    for device in ("1:30", "yes"):
        with pytest.raises(ConfigError) as info:
            resolve_config(preset="hopper", device=device)
        assert str(info.value) == f"command line: train.device: expected auto, cpu, cuda or cuda:N, got '{device}'"
    assert resolve_config(preset="hopper", tensorboard=True).train.tensorboard is True
    assert resolve_config(preset="hopper", overrides=["train.seed=5"], seed=3).train.seed == 3  # a flag wins
