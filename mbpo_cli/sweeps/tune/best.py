"""A study's result: its best complete trial, and a trial's config as the YAML `mbpo train --config` takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mbpo_cli.config.files import preset_path, read_yaml
from mbpo_cli.config.mappings import config_diff
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config
from mbpo_cli.sweeps.tune.space import set_dotted
from mbpo_cli.sweeps.tune.spec import StudySpec
from mbpo_cli.sweeps.tune.trials import TrialState, TrialTask


@dataclass(frozen=True)
class Best:
    """The best complete trial."""

    number: int
    value: float
    values: dict[str, Any]
    run_id: str | None
    config: Config


def best_trial(spec: StudySpec, tasks: Sequence[TrialTask]) -> Best | None:
    """The complete trial with the best value (the first of equals), or None when no trial is complete."""
    complete = [t for t in tasks if t.state is TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    sign = 1.0 if spec.objective.direction.value == "maximize" else -1.0
    best = max(complete, key=lambda t: (sign * (t.value or 0.0), -t.number))
    assert best.value is not None
    return Best(best.number, best.value, best.values, best.run_id, spec.trial_config(best.values))


def best_config_yaml(config: Config, preset: str | None) -> dict[str, Any]:
    """A trial's config as the YAML `mbpo train --config` takes: ``base: PRESET`` and the keys that differ from the
    preset, or the whole config where there is no preset."""
    data = config.to_dict()
    if preset is None:
        return data
    reference = build_config(read_yaml(preset_path(preset)), preset).to_dict()
    result: dict[str, Any] = {"base": preset}
    for key, (_, value) in config_diff(reference, data).items():
        set_dotted(result, key, value)
    return result
