"""The `dhmbpo` section and `--algo dhmbpo` (mbpo_cli.config): the paper's settings as defaults, the five paper
presets run as DHMBPO on their own task, and one-line errors for what DHMBPO cannot do."""

from __future__ import annotations

import dataclasses

import pytest

from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.config.schema import DHMBPOConfig, DynamicsConfig

PAPER_TASKS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5", "ant": "Ant-v5",
               "humanoid": "Humanoid-v5"}
PAPER = {
    "iteration_steps": 1000, "updates_per_step": 1.0, "first_model_factor": 5, "first_updates_factor": 5,
    "critic_warmup_updates": None, "distribution_horizon": 20, "distribution_every": 20, "distribution_starts": 256,
    "distribution_states": 5120, "distribution_buffer": 51_200, "training_horizon": 5, "gamma": 0.995,
    "batch_size": 256, "lr": 3e-4, "tau": 5e-3, "init_alpha": 0.1, "target_entropy": None, "actor_hidden": 256,
    "actor_layers": 3, "critic_members": 5, "target_members": 2, "critic_hidden": 256, "critic_layers": 3,
    "critic_norm_eps": 1e-5, "critic_dropout": 1e-3, "bound_quantile": 0.01, "bound_rate": 3e-4,
}
PAPER_MODEL = {
    "members": 8, "hidden": 256, "layers": 3, "norm_eps": (1.0, 0.1, 0.01), "dropout": (0.0075, 0.005, 0.0025),
    "weight_decay": (2.5e-4, 5e-4, 7.5e-4, 1e-3), "noise_decay": 1e-2, "lr": 1e-3, "min_std": 1e-3,
    "bootstrap": "exponential", "validation_fraction": 0.2, "data_cap": 100_000, "batch_size": 2048,
    "batches_per_epoch": 6, "validation_batches": 6, "improvement_p": 0.1, "keep_p": 0.5, "patience_scale": 50.0,
    "max_epochs_ratio": 5.0, "max_seconds": None,
}


def test_defaults_are_the_papers_settings() -> None:
    """Every key of the section, with the value of the paper's public configuration (4kubo/erl_lib at 024b0b5)."""
    defaults = DHMBPOConfig()
    assert {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults) if f.name != "model"} == PAPER
    assert dataclasses.asdict(DynamicsConfig()) == PAPER_MODEL
    assert (defaults.warmup_updates, defaults.warmup_states) == (250, 3200)  # ep_len / 4; 256 * 250 / 20
    assert (defaults.joint_updates(first=True), defaults.joint_updates(first=False)) == (5000, 1000)
    assert dataclasses.replace(defaults, critic_warmup_updates=0).warmup_states == 0  # no warm-up, no warm-up DR
    assert dataclasses.replace(defaults, distribution_horizon=0).warmup_states == 0


@pytest.mark.parametrize("preset", sorted(PAPER_TASKS))
def test_algo_dhmbpo_runs_the_papers_settings_on_the_presets_task(preset: str) -> None:
    mbpo, dhmbpo = resolve_config(preset=preset), resolve_config(preset=preset, algo="dhmbpo")
    assert (dhmbpo.algo, dhmbpo.label, dhmbpo.uses_model) == ("dhmbpo", "dhmbpo", True)
    assert dhmbpo.env == mbpo.env and dhmbpo.env.id == PAPER_TASKS[preset] and dhmbpo.env.termination == "known"
    assert dhmbpo.dhmbpo == DHMBPOConfig() and dhmbpo.train == mbpo.train and dhmbpo.train.init_steps == 5000
    assert mbpo.label == "mbpo"


def test_a_dhmbpo_file_and_an_override_of_a_nested_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "run.yaml"
    path.write_text("base: hopper\nalgo: dhmbpo\ndhmbpo:\n  training_horizon: 3\n  model:\n    members: 4\n")
    config = resolve_config(config_file=path, overrides=["dhmbpo.model.patience_scale=10"])
    assert (config.algo, config.dhmbpo.training_horizon, config.dhmbpo.model.members) == ("dhmbpo", 3, 4)
    assert config.dhmbpo.model.patience_scale == 10.0 and config.dhmbpo.model.hidden == 256


@pytest.mark.parametrize(("overrides", "message"), [
    (["dhmbpo.distribution_starts=100"], "dhmbpo.distribution_starts: must be a multiple of dhmbpo.model.members"),
    (["dhmbpo.target_members=6"], "dhmbpo.target_members: 6 > critic_members 5"),
    (["dhmbpo.gamma=1.0"], "dhmbpo.gamma: must be in [0, 1)"),
    (["dhmbpo.model.weight_decay=[0.1]"], "dhmbpo.model.weight_decay: needs layers + 1 = 4 values"),
    (["dhmbpo.model.keep_p=0.05"], "dhmbpo.model.improvement_p: need 0 < improvement_p <= keep_p <= 1"),
    (["dhmbpo.iteration_steps=3000"], "train.init_steps: DHMBPO explores for whole iterations"),
    (["env.reward=os:getcwd"], "env.reward: DHMBPO learns the reward with its model"),
    (["train.pipeline=true"], "train.pipeline: is MBPO's"),
    (["dhmbpo.model.bootstrap=uniform"], "dhmbpo.model.bootstrap: expected one of exponential, poisson"),
])
def test_bad_dhmbpo_settings_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(preset="hopper", algo="dhmbpo", overrides=overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_section_is_not_checked_for_other_algorithms() -> None:
    """An MBPO run ignores the dhmbpo section: its rules apply only with algo: dhmbpo."""
    assert resolve_config(preset="hopper", overrides=["dhmbpo.iteration_steps=3000"]).algo == "mbpo"


def test_compare_counts_dhmbpo_runs_as_model_based() -> None:
    """`mbpo compare` picks the one model-free group of a task as the baseline: DHMBPO's runs are not one."""
    from mbpo_cli.reports.compare import is_model_free

    assert [is_model_free(label) for label in ("dhmbpo", "mbpo", "mbpo-td3", "sac", "dqn")] == [
        False, False, False, True, True]
