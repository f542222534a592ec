"""Loading a run configuration: YAML presets, `base:` chains, dotted overrides, validation at load.

A file may name a `base:` preset (or another file) whose values it overrides. Errors are one line naming
the key and the file: `ConfigError("presets/x.yaml: sac.real_ratio: must be in [0, 1], got 1.5")`.
Nothing here imports the engine: a config is checked against the environment only when a run starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from mbpo_cli.config.env_wrappers import check_wrappers
from mbpo_cli.config.schema import KNOWN_TERMINATIONS, TERMINATION_MODES, Config

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PRESETS_DIRS = (PACKAGE_DIR / "presets", PACKAGE_DIR.parent / "presets")
"""Bundled presets: inside the installed package (the wheel), or beside it in a source checkout."""


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d{1,3})?")
"""The values of train.device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."""
MAX_INT = 2**53 - 1
"""Largest integer a config accepts anywhere (exact in JSON, far inside SQLite's 64-bit integers)."""
MAX_SEED = 2**31 - 1
"""Largest seed (every generator is seeded from it with room to spare in 64 bits)."""
MAX_THREADS = 1024
"""Largest `train.threads` (torch crashes, rather than refuses, at absurd counts)."""
MAX_ECHO = 200
"""Longest echo of a user's value in an error message (longer ones are cut, ending in "…")."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of collections a user's YAML may have (a config nests three or four levels)."""
MAX_YAML_NODES = 100_000
"""Most values a user's YAML may hold once its aliases are expanded (a config holds about 150): a few hundred
bytes of nested aliases (a "billion laughs") would otherwise expand to gigabytes wherever the config is copied,
stored or shown."""
MAX_YAML_INT_BITS = 1024
"""Widest integer a user's YAML may hold (about 308 digits, the range of a float)."""


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the file and the key."""


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """`text` cut to at most `limit` characters, ending in "…" where it was cut: how a user's value (or a whole
    error line, with a larger limit) is echoed."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: Any) -> str:
    """A user's value as an error message echoes it: its repr, clipped to :data:`MAX_ECHO` characters."""
    try:
        return clip(repr(value))
    except ValueError:  # an integer of more digits than Python converts to text
        return f"a {type(value).__name__} too large to show"


# ---------------------------------------------------------------------------------------------
# Reading a user's YAML
# ---------------------------------------------------------------------------------------------


class YamlRefused(yaml.MarkedYAMLError):
    """YAML that parses but is refused as a config: a duplicate or non-string key, nesting or aliases beyond the
    bounds, an integer too wide. `problem` says what, `problem_mark` where."""


_SAFE_INT = yaml.SafeLoader.yaml_constructors["tag:yaml.org,2002:int"]
"""PyYAML's own integer constructor, which :meth:`ConfigLoader.construct_bounded_int` bounds."""


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the checks a user's config needs.

    Refuses a mapping key given twice (YAML says keys are unique; PyYAML would keep the last silently, so a second
    `train:` section would replace the first), a key that is not a string, nesting deeper than
    :data:`MAX_YAML_DEPTH`, a document whose aliases expand it beyond :data:`MAX_YAML_NODES` values or into itself,
    and integers wider than :data:`MAX_YAML_INT_BITS`. Merge keys (`<<: *defaults`) stay allowed.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}
        """Values under each composed node, aliases expanded, by the node's id."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """A node as PyYAML composes it, counted: its depth and its size with every alias expanded bounded."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise YamlRefused(problem="an alias inside the collection it names (a recursive alias)",
                                  problem_mark=mark)
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YamlRefused(problem=f"nested more than {MAX_YAML_DEPTH} levels deep", problem_mark=mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            children: list[yaml.Node] = [n for pair in node.value for n in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        size = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_YAML_NODES:
            raise YamlRefused(problem=f"more than {MAX_YAML_NODES:,} values once its aliases are expanded",
                              problem_mark=mark)
        self._sizes[id(node)] = size
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """The mapping of `node`, refused when a key is not a string or is given twice (merge keys aside)."""
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise YamlRefused(problem=f"key {shown(key)} is not a string (quote it)",
                                  problem_mark=key_node.start_mark)
            if key in first_line:
                raise YamlRefused(problem=f"duplicate key {shown(key)} (first at line {first_line[key]})",
                                  problem_mark=key_node.start_mark)
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        """An integer scalar, refused beyond :data:`MAX_YAML_INT_BITS` (or Python's digit limit)."""
        try:
            value: int | None = _SAFE_INT(self, node)
        except ValueError:  # more digits than Python converts
            value = None
        if value is None or value.bit_length() > MAX_YAML_INT_BITS:
            raise YamlRefused(problem=f"integer too large (more than {MAX_YAML_INT_BITS} bits)",
                              problem_mark=node.start_mark)
        return value


ConfigLoader.add_constructor("tag:yaml.org,2002:int", ConfigLoader.construct_bounded_int)


def load_user_yaml(text: str) -> Any:
    """The value of a user's YAML text (a config file, a `--set` value) as :class:`ConfigLoader` reads it:
    safe types only; yaml.YAMLError (:class:`YamlRefused` for what it refuses) when it cannot be used."""
    loader = ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


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
    raise ConfigError(f"unknown preset {shown(name)} (known: {', '.join(preset_names())})")


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from `path`, following `base:` (a preset name or a path relative to the file)."""
    return _read_yaml(path, seen=())


def base_preset(path: Path) -> str | None:
    """The preset a config file builds on through its `base:` chain, if any (call after a successful load)."""
    for _ in range(32):
        data = load_user_yaml(path.read_text())
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
        data = load_user_yaml(path.read_text())
    except YamlRefused as err:
        line = err.problem_mark.line + 1 if err.problem_mark is not None else "?"
        raise ConfigError(f"{path}: line {line}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(err, "problem", None) or err).strip().splitlines()
        raise ConfigError(f"{path}: invalid YAML{where}: {clip(problem[0]) if problem else 'parse error'}") from None
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
        raise ConfigError(f"--set {clip(text)}: expected KEY=VALUE, e.g. model.ensemble_size=5")
    try:
        value = load_user_yaml(raw) if raw.strip() else None
    except YamlRefused as err:
        raise ConfigError(f"--set {clip(key.strip())}: {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    path = key.strip().split(".")
    if len(path) > MAX_YAML_DEPTH:
        raise ConfigError(f"--set {clip(key.strip())}: nested more than {MAX_YAML_DEPTH} levels deep")
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dotted `KEY=VALUE` overrides applied to a raw config mapping (validated later).

    An override of a key by its old name (`sac.updates_per_step`, see :data:`LEGACY_AGENT_KEYS`) overrides the
    key under its new name.
    """
    result = deep_merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 2 and path[0] == "sac" and path[1] in LEGACY_AGENT_KEYS:
            path = ["agent", path[1]]
        node = result
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[path[-1]] = value
    return result


LEGACY_AGENT_KEYS = ("updates_per_step", "batch_size", "real_ratio", "gamma", "buffer_size")
"""Keys that moved from the `sac` section to `agent` when other base agents arrived."""


def migrate(data: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Configs written before the `agent` section (runs in older registries, old files) in today's layout.

    `sac.<key>` for the keys of :data:`LEGACY_AGENT_KEYS` becomes `agent.<key>`, and `algo: sac` becomes
    `algo: model_free` with `agent.name: sac`. A key given under both names with different values is an error.
    """
    result = deep_merge({}, data)
    sac, agent = result.get("sac"), result.get("agent")
    if isinstance(sac, Mapping) and any(k in sac for k in LEGACY_AGENT_KEYS):
        agent = dict(agent) if isinstance(agent, Mapping) else {}
        sac = dict(sac)
        for key in LEGACY_AGENT_KEYS:
            if key not in sac:
                continue
            value = sac.pop(key)
            if key in agent and agent[key] != value:
                raise ConfigError(f"{source}: sac.{key}: the old name of agent.{key}, which is set to "
                                  f"{shown(agent[key])}; set only agent.{key}")
            agent[key] = value
        result["sac"], result["agent"] = sac, agent
    if result.get("algo") == "sac":
        agent = dict(result.get("agent") or {})
        if agent.get("name", "sac") != "sac":
            raise ConfigError(f"{source}: algo: sac means SAC without a model, but agent.name is "
                              f"{shown(agent['name'])}; use algo: model_free")
        result["algo"], result["agent"] = "model_free", {**agent, "name": "sac"}
    return result


def build_config(data: Mapping[str, Any], source: str = "config") -> Config:
    """A validated Config from raw data; every problem raises ConfigError naming `source` and key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level: expected a mapping, got {_describe(data)}")
    config = _build(Config, migrate(data, source), source, prefix="")
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
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise ConfigError(
            f"{source}: {prefix}{clip(str(unknown[0]))}: unknown key (known: {', '.join(sorted(names))})"
        )
    values: dict[str, Any] = {}
    for key, raw in data.items():
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[key] = _build(hint, raw, source, f"{prefix}{key}.")
        else:
            values[key] = _coerce(raw, hint, f"{source}: {prefix}{key}")
    return cls(**values)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {shown(value)}" if not isinstance(value, dict) else "a mapping"


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
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, args))}, got {shown(value)}")
        return value
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a section inside a list (`env.wrappers`)
        source, _, key = where.rpartition(": ")
        return _build(hint, value, source, f"{key}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        if abs(value) > MAX_INT:
            raise ConfigError(f"{where}: must be at most {MAX_INT:,} in size, got {shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):  # a list of sections
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
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
    for key in ("updates_per_step", "batch_size", "buffer_size"):
        positive(f"agent.{key}", getattr(c.agent, key))
    for key in ("hidden", "layers", "lr", "init_alpha", "tau"):
        positive(f"sac.{key}", getattr(c.sac, key))
    for key in ("hidden", "layers", "lr", "tau", "policy_delay"):
        positive(f"td3.{key}", getattr(c.td3, key))
    for key in ("hidden", "layers", "lr", "tau"):
        positive(f"ddpg.{key}", getattr(c.ddpg, key))
    for key in ("hidden", "layers", "lr", "tau", "epsilon_decay_steps", "max_grad_norm"):
        positive(f"dqn.{key}", getattr(c.dqn, key))
    for key in ("hidden", "layers", "lr", "batch_size", "max_epochs"):
        positive(f"done_model.{key}", getattr(c.done_model, key))
    for key in ("steps", "epoch_length", "checkpoint_every", "keep_checkpoints", "threads"):
        positive(f"train.{key}", getattr(c.train, key))
    for key in ("horizon", "samples", "imagined_episodes", "imagined_cap"):
        positive(f"diagnostics.{key}", getattr(c.diagnostics, key))
    positive("rollout.adaptive_max_length", c.rollout.adaptive_max_length)
    if not 0.0 < c.rollout.adaptive_scale < math.inf:
        fail("rollout.adaptive_scale", f"must be positive and finite, got {c.rollout.adaptive_scale}")
    positive("model.lr", c.model.lr)
    if c.model.max_train_seconds is not None and not 0.0 < c.model.max_train_seconds < math.inf:
        fail("model.max_train_seconds", f"must be positive and finite, got {c.model.max_train_seconds}")
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
    if not 0.0 <= c.agent.real_ratio <= 1.0:
        fail("agent.real_ratio", f"must be in [0, 1], got {c.agent.real_ratio}")
    if not 0.0 <= c.agent.gamma <= 1.0:
        fail("agent.gamma", f"must be in [0, 1], got {c.agent.gamma}")
    for section in ("sac", "td3", "ddpg", "dqn"):
        tau = getattr(c, section).tau
        if not 0.0 < tau <= 1.0:
            fail(f"{section}.tau", f"must be in (0, 1], got {tau}")
    for key in ("policy_noise", "noise_clip", "exploration_noise"):
        if getattr(c.td3, key) < 0:
            fail(f"td3.{key}", f"must be >= 0, got {getattr(c.td3, key)}")
    if c.ddpg.exploration_noise < 0:
        fail("ddpg.exploration_noise", f"must be >= 0, got {c.ddpg.exploration_noise}")
    for key in ("epsilon_start", "epsilon_end"):
        if not 0.0 <= getattr(c.dqn, key) <= 1.0:
            fail(f"dqn.{key}", f"must be in [0, 1], got {getattr(c.dqn, key)}")
    if not 0.0 < c.done_model.holdout_ratio < 1.0:
        fail("done_model.holdout_ratio", f"must be in (0, 1), got {c.done_model.holdout_ratio}")
    if c.done_model.threshold is not None and not 0.0 < c.done_model.threshold < 1.0:
        fail("done_model.threshold", f"must be in (0, 1), got {c.done_model.threshold}")
    if c.done_model.patience < 0:
        fail("done_model.patience", f"must be >= 0, got {c.done_model.patience}")
    if c.train.init_steps < 0:
        fail("train.init_steps", f"must be >= 0, got {c.train.init_steps}")
    if c.algo == "mbpo" and c.train.init_steps < 1:
        fail("train.init_steps", "must be at least 1 for mbpo: the model first trains on the random steps")
    if c.train.eval_episodes < 0:
        fail("train.eval_episodes", f"must be >= 0, got {c.train.eval_episodes}")
    if not 0 <= c.train.seed <= MAX_SEED:
        fail("train.seed", f"must be in [0, {MAX_SEED}], got {c.train.seed}")
    if c.train.threads is not None and c.train.threads > MAX_THREADS:
        fail("train.threads", f"must be at most {MAX_THREADS}, got {c.train.threads}")
    if not DEVICE_PATTERN.fullmatch(c.train.device):
        fail("train.device", f"expected auto, cpu, cuda or cuda:N, got {shown(c.train.device)}")
    termination = c.env.termination
    if termination not in (*TERMINATION_MODES, *KNOWN_TERMINATIONS) and not _is_function_ref(termination):
        fail("env.termination", f"expected known, learned, never, auto, module:function or a task name "
                                f"({', '.join(KNOWN_TERMINATIONS)}), got {shown(termination)}")
    if c.env.reward != "model" and not _is_function_ref(c.env.reward):
        fail("env.reward", f"expected model or module:function, got {shown(c.env.reward)}")
    check_wrappers(c.env.wrappers, fail)
    if c.algo == "dhmbpo":
        _check_dhmbpo(c, fail)


def _check_dhmbpo(c: Config, fail: Callable[[str, str], None]) -> None:  # noqa: C901 - a flat list of rules
    """The rules of the `dhmbpo` section and of what a DHMBPO run needs from the others (algo: dhmbpo only)."""
    d, m = c.dhmbpo, c.dhmbpo.model

    def positive(key: str, value: int | float | None) -> None:
        if value is not None and value <= 0:
            fail(key, f"must be positive, got {value}")

    for key in ("iteration_steps", "updates_per_step", "first_model_factor", "first_updates_factor",
                "distribution_every", "distribution_starts", "distribution_states", "distribution_buffer",
                "batch_size", "lr", "tau", "init_alpha", "actor_hidden", "actor_layers",
                "critic_members", "target_members", "critic_hidden", "critic_layers", "critic_norm_eps",
                "bound_rate"):
        positive(f"dhmbpo.{key}", getattr(d, key))
    for key in ("members", "hidden", "layers", "lr", "min_std", "data_cap", "batch_size", "batches_per_epoch",
                "validation_batches", "patience_scale", "max_epochs_ratio"):
        positive(f"dhmbpo.model.{key}", getattr(m, key))
    if d.critic_warmup_updates is not None and d.critic_warmup_updates < 0:
        fail("dhmbpo.critic_warmup_updates", f"must be >= 0, got {d.critic_warmup_updates}")
    for key in ("distribution_horizon", "training_horizon"):
        if getattr(d, key) < 0:
            fail(f"dhmbpo.{key}", f"must be >= 0, got {getattr(d, key)}")
    if not 0.0 <= d.gamma < 1.0:
        fail("dhmbpo.gamma", f"must be in [0, 1), got {d.gamma}")
    if d.tau > 1.0 or d.bound_rate > 1.0:
        fail("dhmbpo.tau" if d.tau > 1.0 else "dhmbpo.bound_rate", "must be at most 1")
    if not 0.0 <= d.critic_dropout < 1.0:
        fail("dhmbpo.critic_dropout", f"must be in [0, 1), got {d.critic_dropout}")
    if not 0.0 < d.bound_quantile < 0.5:
        fail("dhmbpo.bound_quantile", f"must be in (0, 0.5), got {d.bound_quantile}")
    if d.target_members > d.critic_members:
        fail("dhmbpo.target_members", f"{d.target_members} > critic_members {d.critic_members}")
    for key in ("batch_size", "distribution_starts"):
        if getattr(d, key) % m.members:
            fail(f"dhmbpo.{key}", f"must be a multiple of dhmbpo.model.members ({m.members}): each member takes an "
                                  f"equal block of the batch, got {getattr(d, key)}")
    if len(m.norm_eps) != m.layers or any(e <= 0 for e in m.norm_eps):
        fail("dhmbpo.model.norm_eps", f"needs layers = {m.layers} positive values, got {list(m.norm_eps)}")
    if len(m.dropout) != m.layers or any(not 0.0 <= p < 1.0 for p in m.dropout):
        fail("dhmbpo.model.dropout", f"needs layers = {m.layers} values in [0, 1), got {list(m.dropout)}")
    if len(m.weight_decay) != m.layers + 1 or any(w < 0 for w in m.weight_decay):
        fail("dhmbpo.model.weight_decay", f"needs layers + 1 = {m.layers + 1} values >= 0, got {list(m.weight_decay)}")
    if m.max_seconds is not None and not 0.0 < m.max_seconds < math.inf:
        fail("dhmbpo.model.max_seconds", f"must be positive and finite, got {m.max_seconds}")
    if m.noise_decay < 0:
        fail("dhmbpo.model.noise_decay", f"must be >= 0, got {m.noise_decay}")
    if not 0.0 < m.validation_fraction < 1.0:
        fail("dhmbpo.model.validation_fraction", f"must be in (0, 1), got {m.validation_fraction}")
    if not 0.0 < m.improvement_p <= m.keep_p <= 1.0:
        fail("dhmbpo.model.improvement_p", f"need 0 < improvement_p <= keep_p <= 1, got {m.improvement_p} and "
                                           f"{m.keep_p}")
    if c.train.init_steps < d.iteration_steps or c.train.init_steps % d.iteration_steps:
        fail("train.init_steps", f"DHMBPO explores for whole iterations: a positive multiple of "
                                 f"dhmbpo.iteration_steps ({d.iteration_steps}), got {c.train.init_steps}")
    if c.env.termination == "learned":
        fail("env.termination", "learned is not available with DHMBPO (its rollouts need a known, never or "
                                "module:function termination)")
    if c.env.reward != "model":
        fail("env.reward", "DHMBPO learns the reward with its model (its actor's gradient flows through it): use model")
    if c.train.pipeline:
        fail("train.pipeline", "is MBPO's: DHMBPO retrains its model in its learning burst")


def _is_function_ref(text: str) -> bool:
    """`package.module:function` (checked for importability when a run starts, not here)."""
    module, sep, name = text.partition(":")
    return bool(sep) and all(p.isidentifier() for p in module.split(".")) and name.isidentifier()


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


@dataclass(frozen=True)
class TaskFacts:
    """What the defaults of a task without a preset depend on (measured on the environment when a run starts)."""

    obs_dim: int
    act_dim: int
    """Action dimensions (the number of choices for a discrete task)."""
    discrete: bool
    """A Discrete action space."""
    termination: str
    """The default `env.termination`: known, learned or never."""


ENV_STEPS = 100_000
"""`train.steps` of `--env ENV_ID` without `--steps`."""
PAPER_INIT_STEPS = 5000
"""The paper's random exploration steps: the most `--env ENV_ID` explores (a tenth of `train.steps` below 50,000)."""
PAPER_EPOCH_LENGTH = 1000
"""The paper's epoch: the longest of `--env ENV_ID` (a twentieth of `train.steps` below 20,000)."""


def env_defaults(env_id: str, facts: TaskFacts, steps: int = ENV_STEPS) -> dict[str, Any]:
    """Defaults for a gymnasium task without a preset, chosen from its facts and the budget `steps`.

    The paper's locomotion settings (G = 20, 1000-step epochs, 5,000 random steps), a wider model
    for large observations (as for Humanoid), DQN for discrete actions, and the usual SAC entropy target -|A|.
    Exploration and epochs scale down with a small budget, so that the agent trains for most of it and is evaluated
    at least 20 times: `init_steps` is a tenth of `steps` (at least 1, at most 5,000) rounded down to whole epochs,
    `epoch_length` a twentieth (at most 1,000). `--steps 5000` explores for 500 steps in epochs of 250, as the small
    presets do; from 50,000 steps on, the paper's values. DHMBPO's iterations are the epochs (it explores for whole
    iterations).
    """
    epoch_length = max(1, min(PAPER_EPOCH_LENGTH, steps // 20))
    init_steps = max(1, min(PAPER_INIT_STEPS, steps // 10))
    init_steps = max(epoch_length, init_steps - init_steps % epoch_length)
    data: dict[str, Any] = {
        "env": {"id": env_id, "termination": facts.termination},
        "agent": {"name": "dqn" if facts.discrete else "sac"},
        "model": {"hidden": 200 if facts.obs_dim < 40 else 400},
        "rollout": {"schedule": [20, 100, 1, 1]},
        "train": {"steps": steps, "init_steps": init_steps, "epoch_length": epoch_length},
        "dhmbpo": {"iteration_steps": epoch_length},
    }
    if not facts.discrete:
        data["sac"] = {"target_entropy": -float(facts.act_dim)}
    return data


BASELINE_UPDATES = 1
"""G of the model-free baseline when `--algo model-free` (or `--algo sac`) switches an MBPO source."""
ALGO_CHOICES = ("mbpo", "model-free", "sac", "dhmbpo")
"""`--algo` values: MBPO, the base agent without a model, SAC without a model, or Double Horizon MBPO (the source's
env and termination, the `dhmbpo` section's settings)."""


def resolve_config(
    *,
    preset: str | None = None,
    config_file: Path | None = None,
    env_id: str | None = None,
    env_facts: TaskFacts | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    steps: int | None = None,
    device: str | None = None,
    algo: str | None = None,
) -> Config:
    """The run config from exactly one source (preset, file or env id) plus command-line overrides.

    `--algo model-free` on an MBPO source trains the configured base agent without a model at the standard
    ratio of one update per env step (G = 1) unless `agent.updates_per_step` is set; `--algo sac` does the same
    with SAC as the agent; `--algo dhmbpo` trains Double Horizon MBPO on the source's task with its `dhmbpo` section.
    """
    chosen = [x for x in (preset, config_file, env_id) if x is not None]
    if len(chosen) > 1:
        raise ConfigError("choose one of --preset, --config and --env")
    if preset is not None:
        path = preset_path(preset)
        data, source = read_yaml(path), str(path)
    elif config_file is not None:
        data, source = read_yaml(config_file), str(config_file)
    elif env_id is not None:
        if env_facts is None:
            raise ConfigError(f"--env {env_id}: the environment's facts are needed")
        data, source = env_defaults(env_id, env_facts, _budget(steps, overrides or [])), f"--env {env_id}"
    else:
        raise ConfigError("choose a task: --preset NAME, --config FILE or --env ENV_ID")
    data = migrate(data, source)
    extra = list(overrides or [])
    if algo is not None:
        extra = _algo_overrides(algo, data, extra) + extra
    for key, value in (("train.seed", seed), ("train.steps", steps), ("train.device", device)):
        if value is not None:
            extra.append(f"{key}={value}")
    config = build_config(data, source)
    return build_config(apply_overrides(data, extra), "command line") if extra else config


def _budget(steps: int | None, overrides: list[str]) -> int:
    """The `train.steps` a run from `--env` will have: `--steps`, else the last `--set train.steps=N`, else
    :data:`ENV_STEPS` (a value that is not a positive integer is refused later, by validation)."""
    if steps is not None:
        return steps
    for text in reversed(overrides):
        path, value = parse_override(text)
        if path == ["train", "steps"] and isinstance(value, int) and not isinstance(value, bool):
            return value
    return ENV_STEPS


def exploration_warning(config: Config) -> str | None:
    """A line for the user when the whole run is random exploration (`train.steps <= train.init_steps`: the
    agent never trains), else None."""
    train = config.train
    if train.steps > train.init_steps:
        return None
    return (f"warning: train.steps {train.steps:,} <= train.init_steps {train.init_steps:,}: every step is "
            "random exploration and the agent never trains; lower train.init_steps (--set train.init_steps=N) or "
            "raise --steps")


def _algo_overrides(algo: str, data: Mapping[str, Any], overrides: list[str]) -> list[str]:
    """The overrides `--algo` stands for (see :func:`resolve_config`)."""
    algo = algo.replace("_", "-")
    if algo not in ALGO_CHOICES:
        raise ConfigError(f"--algo: expected {', '.join(ALGO_CHOICES)}, got {shown(algo)}")
    if algo in ("mbpo", "dhmbpo"):
        return [f"algo={algo}"]
    result = ["algo=model_free"] + (["agent.name=sac"] if algo == "sac" else [])
    sets_updates = any(parse_override(o)[0] in (["agent", "updates_per_step"], ["sac", "updates_per_step"])
                       for o in overrides)
    if data.get("algo", "mbpo") == "mbpo" and not sets_updates:
        result.append(f"agent.updates_per_step={BASELINE_UPDATES}")
    return result
