"""Loading a run configuration: YAML presets, `base:` chains, dotted overrides, validation at load.

A file may name a `base:` preset (or another file) whose values it overrides. Errors are one line naming
the key and the file: `ConfigError("presets/x.yaml: sac.real_ratio: must be in [0, 1], got 1.5")`.
Nothing here imports the engine: a config is checked against the environment only when a run starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from mbpo_cli.config.schema import KNOWN_TERMINATIONS, Config

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PRESETS_DIRS = (PACKAGE_DIR / "presets", PACKAGE_DIR.parent / "presets")
"""Bundled presets: inside the installed package (the wheel), or beside it in a source checkout."""


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the file and the key."""


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    names: set[str] = set()
    for folder in PRESETS_DIRS:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def preset_path(name: str) -> Path:
    """The file of a bundled preset, or a ConfigError listing the known ones."""
    for folder in PRESETS_DIRS:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(f"unknown preset '{name}' (known: {', '.join(preset_names())})")


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from `path`, following `base:` (a preset name or a path relative to the file)."""
    return _read_yaml(path, seen=())


def base_preset(path: Path) -> str | None:
    """The preset a config file builds on through its `base:` chain, if any (call after a successful load)."""
    for _ in range(32):
        data = yaml.safe_load(path.read_text())
        base = data.get("base") if isinstance(data, dict) else None
        if not isinstance(base, str):
            return None
        if not base.endswith((".yaml", ".yml")):
            return base
        path = path.parent / base
    return None


def _read_yaml(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: base: cycle through {' -> '.join(str(p) for p in seen)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(err, "problem", None) or err).strip().splitlines()
        raise ConfigError(f"{path}: invalid YAML{where}: {problem[0] if problem else 'parse error'}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a preset name or a file path")
    try:
        candidate = (path.parent / base) if base.endswith((".yaml", ".yml")) else preset_path(base)
    except ConfigError as err:
        raise ConfigError(f"{path}: base: {err}") from None
    if not candidate.is_file():
        raise ConfigError(f"{path}: base: no such config file {candidate}")
    return deep_merge(_read_yaml(candidate, (*seen, path.resolve())), data)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` applied on `base`, section by section (env.kwargs is replaced, not merged)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "kwargs":
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """`'model.ensemble_size=5'` -> (['model', 'ensemble_size'], 5); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. model.ensemble_size=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dotted `KEY=VALUE` overrides applied to a raw config mapping (validated later)."""
    result = deep_merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[path[-1]] = value
    return result


def build_config(data: Mapping[str, Any], source: str = "config") -> Config:
    """A validated Config from raw data; every problem raises ConfigError naming `source` and key."""
    config = _build(Config, data, source, prefix="")
    _check_ranges(config, source)
    return config


def load_config(path: Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file."""
    return build_config(apply_overrides(read_yaml(path), overrides or []), str(path))


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{source}: {prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})"
        )
    values: dict[str, Any] = {}
    for key, raw in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, raw, source, f"{prefix}{key}.")
        else:
            values[key] = _coerce(raw, hint, f"{source}: {prefix}{key}")
    return cls(**values)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, dict) else "a mapping"


def _coerce(value: Any, hint: Any, where: str) -> Any:  # noqa: C901 - one branch per supported type
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        return {str(k): v for k, v in value.items()}
    raise ConfigError(f"{where}: unsupported type {hint}")


def _check_ranges(c: Config, source: str) -> None:  # noqa: C901 - a flat list of rules
    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: {key}: {message}")

    def positive(key: str, value: int | float | None) -> None:
        if value is not None and value <= 0:
            fail(key, f"must be positive, got {value}")

    for key in ("ensemble_size", "elites", "hidden", "layers", "batch_size", "max_epochs", "max_holdout"):
        positive(f"model.{key}", getattr(c.model, key))
    for key in ("batch_size", "train_freq", "retain_epochs"):
        positive(f"rollout.{key}", getattr(c.rollout, key))
    for key in ("updates_per_step", "batch_size", "hidden", "layers", "buffer_size", "lr", "init_alpha"):
        positive(f"sac.{key}", getattr(c.sac, key))
    for key in ("steps", "epoch_length", "checkpoint_every", "keep_checkpoints", "threads"):
        positive(f"train.{key}", getattr(c.train, key))
    positive("model.lr", c.model.lr)
    if c.model.elites > c.model.ensemble_size:
        fail("model.elites", f"{c.model.elites} elites > ensemble_size {c.model.ensemble_size}")
    if len(c.model.weight_decay) != c.model.layers + 1:
        fail("model.weight_decay", f"needs layers + 1 = {c.model.layers + 1} values, got {len(c.model.weight_decay)}")
    if any(w < 0 for w in c.model.weight_decay):
        fail("model.weight_decay", "must be >= 0")
    if not 0.0 < c.model.holdout_ratio < 1.0:
        fail("model.holdout_ratio", f"must be in (0, 1), got {c.model.holdout_ratio}")
    if c.model.patience < 0 or c.model.improvement < 0:
        fail("model.patience", "patience and improvement must be >= 0")
    min_epoch, max_epoch, min_k, max_k = c.rollout.schedule
    if min_epoch < 0 or max_epoch < min_epoch or min_k < 1 or max_k < 1:
        fail("rollout.schedule", f"need 0 <= min_epoch <= max_epoch and k >= 1, got {list(c.rollout.schedule)}")
    if not 0.0 <= c.sac.real_ratio <= 1.0:
        fail("sac.real_ratio", f"must be in [0, 1], got {c.sac.real_ratio}")
    if not 0.0 <= c.sac.gamma <= 1.0:
        fail("sac.gamma", f"must be in [0, 1], got {c.sac.gamma}")
    if not 0.0 < c.sac.tau <= 1.0:
        fail("sac.tau", f"must be in (0, 1], got {c.sac.tau}")
    if c.train.init_steps < 0:
        fail("train.init_steps", f"must be >= 0, got {c.train.init_steps}")
    if c.train.eval_episodes < 0:
        fail("train.eval_episodes", f"must be >= 0, got {c.train.eval_episodes}")
    if c.train.seed < 0:
        fail("train.seed", f"must be >= 0, got {c.train.seed}")
    if c.train.device != "auto" and c.train.device != "cpu" and not c.train.device.startswith("cuda"):
        fail("train.device", f"expected auto, cpu, cuda or cuda:N, got {c.train.device!r}")
    if c.env.termination not in ("auto", "never", *KNOWN_TERMINATIONS):
        fail("env.termination", f"expected auto or one of {', '.join(('never', *KNOWN_TERMINATIONS))}")


def with_overrides(config: Config, overrides: list[str], source: str = "--set") -> Config:
    """A new validated Config: `config` with dotted overrides applied."""
    return build_config(apply_overrides(config.to_dict(), overrides), source)


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts: {key: (a_value, b_value)}."""
    diff: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping) and key != "kwargs":
            diff.update(config_diff(va, vb, f"{prefix}{key}."))
        elif va != vb:
            diff[f"{prefix}{key}"] = (va, vb)
    return diff


def env_defaults(env_id: str, obs_dim: int, act_dim: int) -> dict[str, Any]:
    """Defaults for a gymnasium task without a preset, chosen from its dimensions.

    The paper's locomotion settings (G = 20, 1000-step epochs, 5,000 random steps), a wider model
    for large observations (as for Humanoid), and the usual SAC entropy target -|A|.
    """
    return {
        "env": {"id": env_id},
        "model": {"hidden": 200 if obs_dim < 40 else 400},
        "rollout": {"schedule": [20, 100, 1, 1]},
        "sac": {"target_entropy": -float(act_dim)},
        "train": {"steps": 100_000},
    }


SAC_BASELINE_UPDATES = 1
"""G of the SAC-only baseline when `--algo sac` switches a preset (standard SAC)."""


def resolve_config(
    *,
    preset: str | None = None,
    config_file: Path | None = None,
    env_id: str | None = None,
    env_dims: tuple[int, int] | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    steps: int | None = None,
    device: str | None = None,
    algo: str | None = None,
) -> Config:
    """The run config from exactly one source (preset, file or env id) plus command-line overrides.

    `--algo sac` on an MBPO source sets G to 1 (standard SAC) unless `sac.updates_per_step` is set.
    """
    chosen = [x for x in (preset, config_file, env_id) if x is not None]
    if len(chosen) > 1:
        raise ConfigError("choose one of --preset, --config and --env")
    if preset is not None:
        path: Path | None = preset_path(preset)
        data, source = read_yaml(path), str(path)
    elif config_file is not None:
        data, source = read_yaml(config_file), str(config_file)
    elif env_id is not None:
        if env_dims is None:
            raise ConfigError(f"--env {env_id}: the environment's dimensions are needed")
        data, source = env_defaults(env_id, *env_dims), f"--env {env_id}"
    else:
        raise ConfigError("choose a task: --preset NAME, --config FILE or --env ENV_ID")
    extra = list(overrides or [])
    sets_updates = any(parse_override(o)[0] == ["sac", "updates_per_step"] for o in extra)
    if algo is not None:
        if algo == "sac" and data.get("algo", "mbpo") != "sac" and not sets_updates:
            extra.insert(0, f"sac.updates_per_step={SAC_BASELINE_UPDATES}")
        extra.insert(0, f"algo={algo}")
    for key, value in (("train.seed", seed), ("train.steps", steps), ("train.device", device)):
        if value is not None:
            extra.append(f"{key}={value}")
    config = build_config(data, source)
    return build_config(apply_overrides(data, extra), "command line") if extra else config
