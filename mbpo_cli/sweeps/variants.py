"""An ablation's plan: the control config, its variants (from the `mbpo ablate` flags) and the seeds.

Every variant's config is built and validated before anything runs; the plan round-trips through plain
data so that `mbpo ablate --resume GROUP` can rebuild it from the registry group's info.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbpo_cli.config.load import ConfigError, build_config, config_diff, parse_override, with_overrides
from mbpo_cli.config.schema import Config
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.registry import sanitize_name

CONTROL = "control"
PLAN_VERSION = 1

_SPLIT_PAIRS = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)")


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: a name and the dotted overrides applied to the control config."""

    name: str
    overrides: tuple[str, ...] = ()


@dataclass
class Plan:
    """Everything needed to run (and rerun) an ablation."""

    group: str
    source: dict[str, Any]
    """How the control was chosen: {"preset"|"config"|"env": ..., "sets": [...], "steps": N, "device": ...}."""
    seeds: list[int]
    variants: list[Variant]
    """The control first."""
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Variant name -> its resolved, validated config (as plain data)."""

    @property
    def control(self) -> dict[str, Any]:
        """The control's config."""
        return self.configs[CONTROL]

    def diffs(self) -> dict[str, dict[str, tuple[Any, Any]]]:
        """Variant name -> {dotted key: (control value, variant value)}."""
        return {v.name: config_diff(self.control, self.configs[v.name]) for v in self.variants}

    def same_as_control(self) -> list[str]:
        """Variants that train exactly as the control does (their differences change no behaviour).

        A rollout schedule whose min and max lengths are equal is one constant length, whatever its epochs;
        so `--rollout-length K` on a preset that already rolls out K steps repeats the control.
        """
        control = _behaviour(self.control)
        return [v.name for v in self.variants if v.name != CONTROL and _behaviour(self.configs[v.name]) == control]

    def total_env_steps(self) -> int:
        """Real env steps over all runs."""
        return sum(int(self.configs[v.name]["train"]["steps"]) for v in self.variants) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the group's ``info`` (and ``--json``)."""
        return {
            "plan_version": PLAN_VERSION,
            "group": self.group,
            "source": self.source,
            "seeds": list(self.seeds),
            "steps": self.control["train"]["steps"],
            "total_env_steps": self.total_env_steps(),
            "variants": [{"name": v.name, "overrides": list(v.overrides)} for v in self.variants],
            "configs": self.configs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan stored by :meth:`to_dict`; every config is validated again."""
        if data.get("plan_version") != PLAN_VERSION:
            raise RunError(f"group {data.get('group')!r}: no ablation plan (version {PLAN_VERSION}) in its info")
        variants = [Variant(v["name"], tuple(v["overrides"])) for v in data["variants"]]
        configs = {v.name: build_config(data["configs"][v.name], f"ablation variant {v.name}").to_dict()
                   for v in variants}
        return cls(group=data["group"], source=data["source"], seeds=list(data["seeds"]), variants=variants,
                   configs=configs)


@dataclass(frozen=True)
class VariantFlags:
    """The variant options of `mbpo ablate`, as given."""

    no_model: bool = False
    rollout_lengths: Sequence[int] = ()
    from_initial_states: bool = False
    real_ratios: Sequence[float] = ()
    ensemble_sizes: Sequence[int] = ()
    deterministic_model: bool = False
    no_elites: bool = False
    adaptive_horizon: bool = False
    updates_per_step: Sequence[int] = ()
    no_training_rollout: bool = False
    """DHMBPO: training horizon 0 (its MBPO parent)."""
    no_distribution_rollout: bool = False
    """DHMBPO: no distribution rollout (its SAC-SVG(H) parent)."""
    mbpo: bool = False
    """MBPO itself, with the source's MBPO settings (beside a DHMBPO control)."""
    custom: Sequence[str] = ()
    """``NAME:KEY=VALUE[,KEY=VALUE...]`` strings."""


def parse_custom(text: str) -> Variant:
    """``'big:model.hidden=400,sac.hidden=512'`` -> Variant('big', ('model.hidden=400', 'sac.hidden=512')).

    Commas inside a value (``rollout.schedule=[0,0,5,5]``) are kept: a pair starts only at ``,KEY=``.
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not name or not rest.strip():
        raise ConfigError(f"--variant {text}: expected NAME:KEY=VALUE[,KEY=VALUE...], e.g. big:model.hidden=400")
    pairs = tuple(p.strip() for p in _SPLIT_PAIRS.split(rest) if p.strip())
    for pair in pairs:
        parse_override(pair)  # a ConfigError for a pair without '='
    return Variant(name, pairs)


def _number(value: float) -> str:
    return f"{value:g}"


def variants_from_flags(flags: VariantFlags, control: Config) -> list[Variant]:
    """The variants the flags ask for, in a fixed order (control first); bad values raise ConfigError."""
    variants = [Variant(CONTROL)]
    if flags.no_model:
        # the paper's "no model" ablation: the agent on real data with the same G (not the G=1 baseline)
        variants.append(Variant("no-model", ("algo=model_free",)))
    for k in flags.rollout_lengths:
        if k < 1:
            raise ConfigError(f"--rollout-length: must be at least 1, got {k}")
        variants.append(Variant(f"k={k}", (f"rollout.schedule=[0, 0, {k}, {k}]",)))
    if flags.from_initial_states:
        variants.append(Variant("from-initial-states", ("rollout.from_initial_states=true",)))
    for ratio in flags.real_ratios:
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"--real-ratio: must be in [0, 1], got {_number(ratio)}")
        variants.append(Variant(f"real-ratio={_number(ratio)}", (f"agent.real_ratio={ratio!r}",)))
    for size in flags.ensemble_sizes:
        if size < 1:
            raise ConfigError(f"--ensemble-size: must be at least 1, got {size}")
        name = "single-model" if size == 1 else f"ensemble={size}"
        elites = min(control.model.elites, size)
        variants.append(Variant(name, (f"model.ensemble_size={size}", f"model.elites={elites}")))
    switches = ((flags.deterministic_model, "deterministic-model", "model.deterministic=true"),
                (flags.no_elites, "no-elites", "model.use_elites=false"),
                (flags.adaptive_horizon, "adaptive-horizon", "rollout.adaptive=true"))
    variants.extend(Variant(name, (override,)) for on, name, override in switches if on)
    for g in flags.updates_per_step:
        if g < 1:
            raise ConfigError(f"--updates-per-step: must be at least 1, got {g}")
        variants.append(Variant(f"G={g}", (f"agent.updates_per_step={g}",)))
    variants.extend(_double_horizon_variants(flags, control))
    variants.extend(parse_custom(text) for text in flags.custom)
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise ConfigError(f"variant {variant.name!r} is given twice (names must be unique)")
        seen.add(variant.name)
    return variants


def _double_horizon_variants(flags: VariantFlags, control: Config) -> list[Variant]:
    """DHMBPO's parents (Kubo et al. 2025: no training rollout gives MBPO with longer branches, no distribution
    rollout SAC-SVG(H)) and MBPO itself, the paper's comparison; the first two need a DHMBPO control."""
    parents = [(flags.no_training_rollout, "--no-training-rollout", "no-training-rollout",
                "dhmbpo.training_horizon=0"),
               (flags.no_distribution_rollout, "--no-distribution-rollout", "no-distribution-rollout",
                "dhmbpo.distribution_horizon=0")]
    variants = []
    for on, flag, name, override in parents:
        if on and control.algo != "dhmbpo":
            raise ConfigError(f"{flag}: a DHMBPO variant, the control is {control.algo} (add --algo dhmbpo)")
        if on:
            variants.append(Variant(name, (override,)))
    if flags.mbpo:
        if control.algo == "mbpo":
            raise ConfigError("--mbpo: the control is already MBPO (use it beside --algo dhmbpo)")
        variants.append(Variant("mbpo", ("algo=mbpo",)))
    return variants


def check_variant(variant: Variant) -> None:
    """Combinations that make no sense in one variant (one-line ConfigError)."""
    keys = {".".join(parse_override(o)[0]): parse_override(o)[1] for o in variant.overrides}
    if keys.get("algo") in ("sac", "model_free"):
        model_keys = sorted(k for k in keys if k.startswith(("rollout.", "model.", "done_model.")))
        if model_keys:
            raise ConfigError(f"variant {variant.name}: algo={keys['algo']} (no model) cannot be combined with "
                              f"{', '.join(model_keys)} (they have no effect without a model)")
    if variant.name == CONTROL and variant.overrides:
        raise ConfigError("variant name 'control' is reserved for the unchanged configuration")


def _behaviour(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config with a constant rollout schedule written one way."""
    schedule = config["rollout"]["schedule"]
    if schedule[2] == schedule[3]:
        config = {**config, "rollout": {**config["rollout"], "schedule": [0, 0, schedule[2], schedule[3]]}}
    return config


def default_group_name(source: dict[str, Any], plan_data: Any) -> str:
    """``<preset>-ablation-<short hash>``: the hash covers only what defines the ablation (``plan_data``: its
    variants, their resolved configs and the seeds), so the dry run names the group its real run creates, and
    the same command run again names the existing group (which it then refuses, pointing at ``--resume``)."""
    stem = source.get("preset") or (Path(source["config"]).stem if source.get("config") else source.get("env"))
    digest = hashlib.sha1(json.dumps(plan_data, sort_keys=True, default=str).encode())
    return sanitize_name(f"{str(stem).lower()}-ablation-{digest.hexdigest()[:6]}")


def build_plan(control: Config, source: dict[str, Any], flags: VariantFlags, seeds: Sequence[int],
               group: str | None) -> Plan:
    """The validated plan: every variant's config is built (and checked) before anything runs. Without a variant
    flag the plan is the control alone: a seed sweep."""
    variants = variants_from_flags(flags, control)
    configs: dict[str, dict[str, Any]] = {}
    for variant in variants:
        check_variant(variant)
        configs[variant.name] = with_overrides(control, list(variant.overrides), f"variant {variant.name}").to_dict()
    defining = [[[v.name, v.overrides, configs[v.name]] for v in variants], list(seeds)]
    name = group or default_group_name(source, defining)
    return Plan(group=sanitize_name(name), source=source, seeds=list(seeds), variants=variants, configs=configs)


def describe_value(value: Any) -> str:
    """A config value as YAML-ish text for tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(describe_value(v) for v in value) + "]"
    return str(value)
