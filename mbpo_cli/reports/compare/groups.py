"""Groups of runs: the seeds of one experiment, and their names.

Runs with the same config apart from ``train.seed``, ``train.device``, ``train.threads`` and ``train.cuda_graphs``
(:data:`IGNORED_KEYS`) form one group, so a group never mixes environments. It is named after its registry group
(plus ``/variant``) when all its runs carry the same one, else ``<preset or env id>-<algo>``, which gets the config
keys in which it differs from the other groups of that preset and algo (or a short hash) in brackets when there are
any; groups that would still share a name get theirs too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mbpo_cli.runs.registry import RunInfo

IGNORED_KEYS = ("train.seed", "train.device", "train.threads", "train.cuda_graphs", "train.tensorboard",
                "train.track")
"""Config keys that may differ between the seeds of one group (how a run is executed or logged, not what it learns;
runs recorded before `train.tensorboard` or `train.track` existed lack them)."""
IGNORED_SECTIONS = ("diagnostics.",)
"""Config sections that change nothing a run learns (and that runs recorded before them lack)."""
ADDED_KEYS = {"rollout.adaptive": False, "rollout.adaptive_scale": 1.0, "rollout.adaptive_max_length": 10}
"""Keys added after runs were recorded, with the value such runs behaved as (so that old and new runs group)."""

_MAX_LABEL = 40
"""The longest bracketed label of config differences in a group name; longer ones become a short hash."""


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and key != "kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_signature(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config without the keys seeds may differ in (:data:`IGNORED_KEYS`, :data:`IGNORED_SECTIONS`),
    keys added since a run was recorded taking their old behaviour (:data:`ADDED_KEYS`)."""
    flat = {**ADDED_KEYS, **_flatten(config)}
    return {k: v for k, v in flat.items() if k not in IGNORED_KEYS and not k.startswith(IGNORED_SECTIONS)}


def _key(signature: Mapping[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True, default=str)


@dataclass(frozen=True)
class Group:
    """Runs of one configuration (the seeds of one experiment), ordered by seed."""

    name: str
    env_id: str
    algo: str
    preset: str | None
    runs: tuple[RunInfo, ...]
    signature: dict[str, Any] = field(repr=False)

    @property
    def seeds(self) -> list[int]:
        """The runs' seeds."""
        return [r.seed for r in self.runs]


def _default_name(run: RunInfo) -> str:
    return f"{run.preset or run.env_id}-{run.algo}"


def _base_name(runs: Sequence[RunInfo]) -> str:
    registry_groups = {r.group for r in runs}
    variants = {r.variant for r in runs}
    if len(registry_groups) == 1 and None not in registry_groups:
        name = str(runs[0].group)
        return f"{name}/{runs[0].variant}" if len(variants) == 1 and None not in variants else name
    return _default_name(runs[0])


def _disambiguate(base: str, signatures: list[dict[str, Any]]) -> list[str]:
    """Names for groups sharing ``base``: the config keys in which they differ, or a short hash."""
    keys = sorted({k for s in signatures for k in s if len({_key({k: t.get(k)}) for t in signatures}) > 1})
    names = []
    for signature in signatures:
        label = ",".join(f"{k.rsplit('.', 1)[-1]}={signature.get(k)}" for k in keys).replace(" ", "")
        if not label or len(label) > _MAX_LABEL:
            label = hashlib.sha1(_key(signature).encode()).hexdigest()[:6]
        names.append(f"{base}[{label}]")
    if len(set(names)) < len(names):
        names = [f"{base}[{hashlib.sha1(_key(s).encode()).hexdigest()[:6]}]" for s in signatures]
    return names


def _names(ordered: Mapping[str, list[RunInfo]], signatures: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Signature key -> the name of its group (see the module docstring)."""
    keys = list(ordered)
    bases = {k: _base_name(ordered[k]) for k in keys}
    names = dict(bases)
    # A group named only by preset and algo says how it differs from every other group of that preset and algo
    # (a registry group's name says nothing of its config).
    defaults = {k: _default_name(ordered[k][0]) for k in keys}
    for default in sorted({defaults[k] for k in keys if bases[k] == defaults[k]}):
        sharing = [k for k in keys if defaults[k] == default]
        if len(sharing) > 1:
            for k, name in zip(sharing, _disambiguate(default, [signatures[k] for k in sharing]), strict=True):
                if bases[k] == default:
                    names[k] = name
    for base in sorted(set(names.values())):
        clashing = [k for k in keys if names[k] == base]
        if len(clashing) > 1:
            for k, name in zip(clashing, _disambiguate(base, [signatures[k] for k in clashing]), strict=True):
                names[k] = name
    return names


def group_runs(runs: Sequence[RunInfo]) -> list[Group]:
    """Group runs by configuration (see the module docstring), in order of first appearance."""
    buckets: dict[str, list[RunInfo]] = {}
    signatures: dict[str, dict[str, Any]] = {}
    for run in runs:
        signature = {**config_signature(run.config), "env.id": run.env_id}  # one env per group, whatever the config
        key = _key(signature)
        buckets.setdefault(key, []).append(run)
        signatures[key] = signature
    ordered = {k: sorted(bucket, key=lambda r: (r.seed, r.created_at, r.id)) for k, bucket in buckets.items()}
    names = _names(ordered, signatures)
    return [
        Group(name=names[k], env_id=members[0].env_id, algo=members[0].algo, preset=members[0].preset,
              runs=tuple(members), signature=signatures[k])
        for k, members in ordered.items()
    ]
