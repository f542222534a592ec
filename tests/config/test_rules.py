"""Each range rule declared beside its field (`mbpo_cli.config.rules` in the schema's field metadata), walked by the
validator: every declared rule is checked under its field's dotted key, the dhmbpo section only with algo: dhmbpo,
and the messages keep their words (issue 23)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.rules import (
    AllAtLeast,
    AtLeast,
    AtMost,
    Holds,
    Matches,
    NameOrFunction,
    Positive,
    Rule,
    Within,
    rules_of,
)
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config


def _ruled_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any, tuple[Rule, ...]]]:
    """(dotted key, type hint, default, rules) of every field with rules, sections included."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _ruled_fields(hint, f"{prefix}{item.name}.")
        elif rules_of(item):
            default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
            yield f"{prefix}{item.name}", hint, default, rules_of(item)


RULED = list(_ruled_fields(Config))


def _breaking(rule: Rule, default: Any) -> Any:
    """A value that breaks `rule` (of the field whose default is `default`)."""
    if isinstance(rule, Positive):
        return 0
    if isinstance(rule, AtLeast):
        return rule.low - 1
    if isinstance(rule, AtMost | Within):
        return rule.high + 1
    if isinstance(rule, AllAtLeast):
        return [rule.low - 1] * len(default)
    if isinstance(rule, Matches | NameOrFunction):
        return "no such value"
    assert isinstance(rule, Holds)
    return [5, 4, 0, 0]


def _nested(key: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


def test_the_schema_declares_the_rules() -> None:
    """The hand-written checks became declarations: over a hundred fields carry rules, in every section."""
    assert len(RULED) > 100
    assert {key.split(".")[0] for key, *_ in RULED} == {
        "env", "agent", "model", "done_model", "rollout", "sac", "td3", "ddpg", "dqn", "train", "diagnostics", "dhmbpo"}


@pytest.mark.parametrize(("key", "hint", "default", "rules"), RULED, ids=[r[0] for r in RULED])
def test_every_declared_rule_is_checked_under_its_key(key: str, hint: Any, default: Any,
                                                      rules: tuple[Rule, ...]) -> None:
    for rule in rules:
        value = _breaking(rule, default)
        coerced = float(value) if float in (hint, *typing.get_args(hint)) and not isinstance(value, list) else value
        if isinstance(coerced, list):
            coerced = tuple(coerced)
        expected = next(m for m in (r.problem(coerced) for r in rules) if m is not None)
        with pytest.raises(ConfigError) as info:
            build_config({"algo": "dhmbpo", **_nested(key, value)}, "src")
        assert str(info.value) == f"src: {key}: {expected}"


def test_the_dhmbpo_section_is_checked_only_for_dhmbpo() -> None:
    data = _nested("dhmbpo.model.members", 0)
    assert build_config({"algo": "mbpo", **data}).algo == "mbpo"
    with pytest.raises(ConfigError, match=r"^src: dhmbpo\.model\.members: must be positive, got 0$"):
        build_config({"algo": "dhmbpo", **data}, "src")


@pytest.mark.parametrize(("algo", "key", "value", "message"), [
    ("mbpo", "model.max_train_seconds", -1, "must be positive and finite, got -1.0"),
    ("mbpo", "rollout.adaptive_scale", 0, "must be positive and finite, got 0.0"),
    ("mbpo", "train.threads", 2000, "must be at most 1024, got 2000"),
    ("mbpo", "train.seed", 2**31, "must be in [0, 2147483647], got 2147483648"),
    ("mbpo", "train.device", "x", "expected auto, cpu, cuda or cuda:N, got 'x'"),
    ("mbpo", "env.reward", "x", "expected model or module:function, got 'x'"),
    ("mbpo", "sac.tau", 2, "must be in (0, 1], got 2.0"),
    ("mbpo", "td3.noise_clip", -1, "must be >= 0, got -1.0"),
    ("mbpo", "dqn.epsilon_start", 2, "must be in [0, 1], got 2.0"),
    ("mbpo", "done_model.threshold", 1, "must be in (0, 1), got 1.0"),
    ("mbpo", "model.weight_decay", [-1, 0, 0, 0, 0], "must be >= 0"),
    ("mbpo", "rollout.schedule", [20, 10, 1, 1], "need 0 <= min_epoch <= max_epoch and k >= 1, got [20, 10, 1, 1]"),
    ("dhmbpo", "dhmbpo.tau", 2, "must be at most 1"),
    ("dhmbpo", "dhmbpo.bound_quantile", 0.5, "must be in (0, 0.5), got 0.5"),
    ("dhmbpo", "dhmbpo.critic_warmup_updates", -1, "must be >= 0, got -1"),
])
def test_rule_messages_keep_their_words(algo: str, key: str, value: Any, message: str) -> None:
    """The texts the hand-written checks gave, word for word."""
    with pytest.raises(ConfigError) as info:
        build_config({"algo": algo, **_nested(key, value)}, "src")
    assert str(info.value) == f"src: {key}: {message}"


@pytest.mark.parametrize(("algo", "key", "value", "reported", "message"), [
    ("mbpo", "model.elites", 9, "model.elites", "9 elites > ensemble_size 7"),
    ("mbpo", "model.layers", 2, "model.weight_decay", "needs layers + 1 = 3 values, got 5"),
    ("mbpo", "model.improvement", -1, "model.patience", "patience and improvement must be >= 0"),
    ("mbpo", "train.init_steps", 0, "train.init_steps",
     "must be at least 1 for mbpo: the model first trains on the random steps"),
    ("dhmbpo", "dhmbpo.model.norm_eps", [0.5] * 4, "dhmbpo.model.norm_eps",
     "needs layers = 3 positive values, got [0.5, 0.5, 0.5, 0.5]"),
    ("dhmbpo", "dhmbpo.model.keep_p", 0.0, "dhmbpo.model.improvement_p",
     "need 0 < improvement_p <= keep_p <= 1, got 0.1 and 0.0"),
])
def test_rules_that_join_fields_keep_their_words(algo: str, key: str, value: Any, reported: str,
                                                 message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"algo": algo, **_nested(key, value)}, "src")
    assert str(info.value) == f"src: {reported}: {message}"
