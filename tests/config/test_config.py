"""Tests for the run configuration (mbpo_cli.config): presets, inheritance, overrides and one-line errors."""

from pathlib import Path

import pytest

from mbpo_cli.config.env_defaults import TaskFacts, env_defaults
from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.files import preset_names, preset_path, read_yaml
from mbpo_cli.config.load import load_config, with_overrides
from mbpo_cli.config.overrides import apply_overrides, parse_override
from mbpo_cli.config.resolve import exploration_warning, resolve_config
from mbpo_cli.config.schema import Config
from mbpo_cli.config.validation import build_config

PAPER_PRESETS = ["ant", "halfcheetah", "hopper", "humanoid", "inverted_double_pendulum", "inverted_pendulum",
                 "walker2d"]
DMC_PRESETS = ["dmc_cartpole_swingup", "dmc_cheetah_run", "dmc_walker_walk"]
ALL_PRESETS = sorted([*PAPER_PRESETS, "cartpole", *DMC_PRESETS])


def _error(**kwargs: object) -> str:
    """The message of the ConfigError that resolve_config raises, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        resolve_config(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message
    assert message.strip() == message
    return message


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


def test_all_presets_are_bundled() -> None:
    assert preset_names() == ALL_PRESETS


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_every_preset_loads_and_validates(name: str) -> None:
    config = resolve_config(preset=name)
    assert isinstance(config, Config)
    assert config.algo == "mbpo"
    assert config.env.id.endswith("-v5") or name not in PAPER_PRESETS
    assert len(config.model.weight_decay) == config.model.layers + 1
    assert config.model.elites <= config.model.ensemble_size
    assert config.train.init_steps < config.train.steps
    # the file alone (no overrides) gives the same config
    assert load_config(preset_path(name)) == config
    # and the config survives a round trip through its plain-data form
    assert build_config(config.to_dict()) == config


def test_hopper_official_values() -> None:
    c = resolve_config(preset="hopper")
    assert c.env.id == "Hopper-v5"
    assert c.agent.updates_per_step == 20
    assert c.rollout.schedule == (20, 150, 1, 15)
    assert c.sac.target_entropy == -1.0
    assert c.rollout.train_freq == 250
    assert c.train.epoch_length == 1000
    assert c.train.init_steps == 5000
    # the shared values from the paper's base config
    assert (c.model.ensemble_size, c.model.elites, c.model.hidden, c.model.layers) == (7, 5, 200, 4)
    assert c.rollout.batch_size == 100_000
    assert c.agent.real_ratio == pytest.approx(0.05)


def test_paper_presets_use_sac_and_the_known_termination() -> None:
    for name in PAPER_PRESETS:
        c = resolve_config(preset=name)
        assert (c.agent.name, c.env.termination, c.rollout.when) == ("sac", "known", "step"), name


@pytest.mark.parametrize("name", DMC_PRESETS)
def test_dm_control_presets_use_the_suite_s_episodes_and_no_termination(name: str) -> None:
    c = resolve_config(preset=name)
    assert c.env.id == f"dm_control/{name.removeprefix('dmc_').replace('_', '-')}-v0"
    assert (c.env.termination, c.env.kwargs, c.train.epoch_length) == ("never", {"max_episode_steps": 1000}, 1000)


def test_cartpole_preset() -> None:
    c = resolve_config(preset="cartpole")
    assert (c.env.id, c.agent.name, c.env.termination, c.train.steps) == ("CartPole-v1", "dqn", "learned", 5000)
    assert c.rollout.schedule == (0, 0, 1, 1) and c.label == "mbpo-dqn"


def test_ant_uses_the_truncated_observation() -> None:
    c = resolve_config(preset="ant")
    assert c.env.id == "Ant-v5"
    assert c.env.kwargs == {"include_cfrc_ext_in_observation": False}
    assert c.rollout.schedule == (20, 100, 1, 25)


def test_humanoid_official_values() -> None:
    c = resolve_config(preset="humanoid")
    assert c.model.hidden == 400
    assert c.rollout.train_freq == 1000
    assert c.rollout.retain_epochs == 5
    assert c.rollout.schedule == (20, 300, 1, 25)
    assert c.env.kwargs["include_cfrc_ext_in_observation"] is False
    assert c.env.kwargs["include_cinert_in_observation"] is False


def test_halfcheetah_uses_forty_updates_per_step() -> None:
    assert resolve_config(preset="halfcheetah").agent.updates_per_step == 40


# ---------------------------------------------------------------------------------------------
# base: inheritance and --set overrides
# ---------------------------------------------------------------------------------------------


def test_user_file_with_base_preset_overrides_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.yaml", "base: hopper\nagent:\n  updates_per_step: 5\ntrain:\n  seed: 3\n")
    c = resolve_config(config_file=path)
    assert c.agent.updates_per_step == 5
    assert c.train.seed == 3
    # everything else comes from the preset
    hopper = resolve_config(preset="hopper")
    assert c.rollout.schedule == hopper.rollout.schedule
    assert c.sac.target_entropy == hopper.sac.target_entropy
    assert c.env == hopper.env


def test_base_chain_of_files_relative_to_the_file(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    _write(sub / "middle.yaml", "base: ant\nmodel:\n  hidden: 64\n")
    top = _write(tmp_path / "top.yaml", "base: sub/middle.yaml\nmodel:\n  layers: 2\n  weight_decay: [0, 0, 0]\n")
    c = resolve_config(config_file=top)
    assert (c.model.hidden, c.model.layers, c.model.weight_decay) == (64, 2, (0.0, 0.0, 0.0))
    assert c.env.id == "Ant-v5"


def test_env_kwargs_are_replaced_not_merged(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.yaml", "base: humanoid\nenv:\n  kwargs:\n    include_cvel_in_observation: false\n")
    assert resolve_config(config_file=path).env.kwargs == {"include_cvel_in_observation": False}


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert resolve_config(config_file=_write(tmp_path / "empty.yaml", "")) == Config()


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("model.ensemble_size=5", ["model", "ensemble_size"], 5),
        ("agent.real_ratio=0.5", ["agent", "real_ratio"], 0.5),
        ("model.deterministic=true", ["model", "deterministic"], True),
        ("train.threads=null", ["train", "threads"], None),
        ("rollout.schedule=[1, 2, 3, 4]", ["rollout", "schedule"], [1, 2, 3, 4]),
        ("env.id=Hopper-v5", ["env", "id"], "Hopper-v5"),
        ("env.termination=a=b", ["env", "termination"], "a=b"),
        (" algo = sac ", ["algo"], "sac"),
    ],
)
def test_parse_override_types(text: str, key: list[str], expected: object) -> None:
    assert parse_override(text) == (key, expected)


def test_dotted_overrides_are_typed_and_validated() -> None:
    c = resolve_config(
        preset="hopper",
        overrides=["model.ensemble_size=5", "model.elites=3", "agent.real_ratio=0.1", "model.deterministic=true",
                   "rollout.schedule=[1, 10, 1, 4]", "train.threads=2", "model.max_epochs=null",
                   "env.kwargs={exclude_current_positions_from_observation: false}"],
        seed=7, steps=3000, device="cpu",
    )
    assert (c.model.ensemble_size, c.model.elites) == (5, 3)
    assert c.agent.real_ratio == pytest.approx(0.1) and isinstance(c.agent.real_ratio, float)
    assert c.model.deterministic is True
    assert c.rollout.schedule == (1, 10, 1, 4)
    assert c.train.threads == 2
    assert c.model.max_epochs is None
    assert c.env.kwargs == {"exclude_current_positions_from_observation": False}
    assert (c.train.seed, c.train.steps, c.train.device) == (7, 3000, "cpu")


def test_integer_given_for_a_float_becomes_a_float() -> None:
    c = resolve_config(preset="hopper", overrides=["agent.real_ratio=1", "sac.target_entropy=-2"])
    assert c.agent.real_ratio == 1.0 and isinstance(c.agent.real_ratio, float)
    assert c.sac.target_entropy == -2.0 and isinstance(c.sac.target_entropy, float)


def test_later_override_wins_and_source_is_untouched() -> None:
    data = read_yaml(preset_path("hopper"))
    merged = apply_overrides(data, ["train.steps=10", "train.steps=20"])
    assert merged["train"]["steps"] == 20
    assert data["train"]["steps"] == 125000


def test_with_overrides_returns_a_new_validated_config() -> None:
    base = resolve_config(preset="inverted_pendulum")
    changed = with_overrides(base, ["train.steps=500"])
    assert changed.train.steps == 500 and base.train.steps == 20000
    with pytest.raises(ConfigError, match=r"^--set: train\.steps: "):
        with_overrides(base, ["train.steps=0"])


# ---------------------------------------------------------------------------------------------
# --algo and --env
# ---------------------------------------------------------------------------------------------


def test_algo_sac_on_hopper_uses_one_update_per_step() -> None:
    c = resolve_config(preset="hopper", algo="sac")
    assert (c.algo, c.agent.name, c.label) == ("model_free", "sac", "sac")
    assert c.agent.updates_per_step == 1
    # everything else is the preset's
    assert c.sac.target_entropy == -1.0


def test_algo_sac_keeps_an_explicit_updates_per_step() -> None:
    c = resolve_config(preset="hopper", algo="sac", overrides=["agent.updates_per_step=20"])
    assert (c.algo, c.agent.updates_per_step) == ("model_free", 20)


def test_algo_model_free_keeps_the_configured_agent() -> None:
    c = resolve_config(preset="inverted_pendulum", algo="model-free", overrides=["agent.name=td3"])
    assert (c.algo, c.agent.name, c.agent.updates_per_step, c.label) == ("model_free", "td3", 1, "td3")
    assert resolve_config(preset="inverted_pendulum", overrides=["agent.name=td3"]).label == "mbpo-td3"
    assert resolve_config(preset="inverted_pendulum").label == "mbpo"


def test_algo_sac_in_the_file_keeps_its_updates_per_step(tmp_path: Path) -> None:
    path = _write(tmp_path / "sac.yaml", "base: hopper\nalgo: model_free\nagent:\n  updates_per_step: 3\n")
    assert resolve_config(config_file=path, algo="sac").agent.updates_per_step == 3


def test_algo_mbpo_keeps_the_preset_g() -> None:
    c = resolve_config(preset="hopper", algo="mbpo")
    assert (c.algo, c.agent.updates_per_step) == ("mbpo", 20)


def test_configs_written_before_the_agent_section_still_load(tmp_path: Path) -> None:
    """Runs in older registries (and old files) name the loop's keys under `sac` and the baseline `algo: sac`."""
    old = {"algo": "sac", "sac": {"updates_per_step": 3, "real_ratio": 0.5, "gamma": 0.9, "lr": 1e-3},
           "env": {"id": "Hopper-v5", "termination": "auto"}}
    c = build_config(old, "run abc")
    assert (c.algo, c.agent.name, c.agent.updates_per_step, c.agent.real_ratio, c.agent.gamma, c.sac.lr) == (
        "model_free", "sac", 3, 0.5, 0.9, 1e-3)
    # the old name on the command line overrides the new key
    assert resolve_config(preset="hopper", overrides=["sac.updates_per_step=7"]).agent.updates_per_step == 7
    both = _write(tmp_path / "both.yaml", "agent:\n  updates_per_step: 2\nsac:\n  updates_per_step: 3\n")
    assert "sac.updates_per_step: the old name of agent.updates_per_step" in _error(config_file=both)
    clash = _write(tmp_path / "clash.yaml", "algo: sac\nagent:\n  name: dqn\n")
    assert "use algo: model_free" in _error(config_file=clash)


def _facts(obs: int, act: int, discrete: bool = False, termination: str = "never") -> TaskFacts:
    return TaskFacts(obs, act, discrete, termination)


def test_env_defaults_from_facts() -> None:
    small = env_defaults("Pendulum-v1", _facts(3, 1))
    assert small["env"] == {"id": "Pendulum-v1", "termination": "never"}
    assert small["agent"]["name"] == "sac"
    assert small["model"]["hidden"] == 200
    assert small["sac"]["target_entropy"] == -1.0
    assert env_defaults("Humanoid-v5", _facts(348, 17))["model"]["hidden"] == 400
    assert env_defaults("Humanoid-v5", _facts(348, 17))["sac"]["target_entropy"] == -17.0
    cartpole = env_defaults("CartPole-v1", _facts(4, 2, discrete=True, termination="learned"))
    assert cartpole["agent"]["name"] == "dqn" and cartpole["env"]["termination"] == "learned"
    assert "sac" not in cartpole


def test_resolve_from_env_id() -> None:
    c = resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1), steps=2000)
    assert (c.env.id, c.algo, c.train.steps, c.sac.target_entropy) == ("Pendulum-v1", "mbpo", 2000, -1.0)
    assert c.agent.updates_per_step == 20
    assert resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1), algo="sac").agent.updates_per_step == 1


@pytest.mark.parametrize(("steps", "init_steps", "epoch_length"), [
    (5000, 500, 250), (2000, 200, 100), (20_000, 2000, 1000), (100_000, 5000, 1000), (300_000, 5000, 1000),
    (15, 1, 1), (5, 1, 1), (3150, 314, 157),
])
def test_env_exploration_and_epochs_scale_with_the_budget(steps: int, init_steps: int, epoch_length: int) -> None:
    """`--env ID --steps N` explores a tenth of N (at most 5,000) and evaluates at least 20 times (epochs of at most
    1,000), whether N comes from --steps or --set train.steps."""
    for kwargs in ({"steps": steps}, {"overrides": [f"train.steps={steps}"]}):
        train = resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1), **kwargs).train  # type: ignore[arg-type]
        assert (train.steps, train.init_steps, train.epoch_length) == (steps, init_steps, epoch_length)
    dhmbpo = resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1), steps=steps, algo="dhmbpo")
    assert dhmbpo.dhmbpo.iteration_steps == epoch_length  # whole iterations of exploration: a valid DHMBPO config


def test_env_defaults_keep_the_papers_values_without_steps_and_yield_to_explicit_sets() -> None:
    train = resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1)).train
    assert (train.steps, train.init_steps, train.epoch_length) == (100_000, 5000, 1000)
    train = resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1), steps=5000,
                           overrides=["train.init_steps=1000", "train.epoch_length=500"]).train
    assert (train.init_steps, train.epoch_length) == (1000, 500)


def test_mbpo_needs_a_random_step_to_train_its_model_on() -> None:
    assert "train.init_steps: must be at least 1 for mbpo" in _error(preset="hopper", overrides=["train.init_steps=0"])
    assert resolve_config(preset="hopper", algo="sac", overrides=["train.init_steps=0"]).train.init_steps == 0


def test_a_run_that_only_explores_is_warned_about() -> None:
    assert exploration_warning(resolve_config(env_id="Pendulum-v1", env_facts=_facts(3, 1), steps=5000)) is None
    assert exploration_warning(resolve_config(preset="hopper", steps=5001)) is None
    warning = exploration_warning(resolve_config(preset="hopper", steps=5000))
    assert warning == ("warning: train.steps 5,000 <= train.init_steps 5,000: every step is random exploration and "
                       "the agent never trains; lower train.init_steps (--set train.init_steps=N) or raise --steps")


def test_exactly_one_source() -> None:
    assert "choose a task" in _error()
    assert "choose one of" in _error(preset="hopper", env_id="Hopper-v5", env_facts=_facts(11, 3))
    assert "choose one of" in _error(preset="hopper", config_file=Path("x.yaml"))
    assert "facts are needed" in _error(env_id="Hopper-v5")


# ---------------------------------------------------------------------------------------------
# One-line errors naming the key and the file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "key", "words"),
    [
        ("trian:\n  steps: 5\n", "trian", "unknown key"),
        ("train:\n  stepz: 5\n", "train.stepz", "unknown key"),
        ("model:\n  hiden: 5\n", "model.hiden", "unknown key"),
        ("train:\n  steps: many\n", "train.steps", "expected an integer"),
        ("train:\n  steps: true\n", "train.steps", "expected an integer"),
        ("train:\n  steps: 1.5\n", "train.steps", "expected an integer"),
        ("model:\n  deterministic: 1\n", "model.deterministic", "expected true or false"),
        ("agent:\n  real_ratio: lots\n", "agent.real_ratio", "expected a number"),
        ("agent:\n  name: ppo\n", "agent.name", "expected one of sac, td3, ddpg, dqn"),
        ("dqn:\n  epsilon_end: 2\n", "dqn.epsilon_end", "[0, 1]"),
        ("td3:\n  policy_delay: 0\n", "td3.policy_delay", "must be positive"),
        ("done_model:\n  threshold: 1\n", "done_model.threshold", "(0, 1)"),
        ("env:\n  reward: bogus\n", "env.reward", "model or module:function"),
        ("rollout:\n  when: sometimes\n", "rollout.when", "expected one of step, episode"),
        ("model: 5\n", "model", "expected a mapping"),
        ("algo: ppo\n", "algo", "expected one of mbpo, model_free"),
        ("rollout:\n  schedule: [1, 2, 3]\n", "rollout.schedule", "4 values"),
        ("train:\n  steps: -5\n", "train.steps", "must be positive"),
        ("train:\n  steps: 0\n", "train.steps", "must be positive"),
        ("agent:\n  real_ratio: 1.5\n", "agent.real_ratio", "[0, 1]"),
        ("model:\n  elites: 9\n", "model.elites", "ensemble_size"),
        ("model:\n  weight_decay: [1.0e-4, 1.0e-4]\n", "model.weight_decay", "layers + 1"),
        ("model:\n  weight_decay: [-1, 0, 0, 0, 0]\n", "model.weight_decay", ">= 0"),
        ("rollout:\n  schedule: [20, 10, 1, 1]\n", "rollout.schedule", "min_epoch"),
        ("train:\n  device: gpu\n", "train.device", "cuda"),
        ("env:\n  termination: bogus\n", "env.termination", "expected known, learned"),
        ("env:\n  termination: 'my mod:fn'\n", "env.termination", "module:function"),
    ],
)
def test_bad_file_value_names_file_and_key(tmp_path: Path, yaml_text: str, key: str, words: str) -> None:
    path = _write(tmp_path / "bad.yaml", yaml_text)
    message = _error(config_file=path)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


def test_error_in_a_file_inheriting_a_preset_names_the_users_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.yaml", "base: hopper\nmodel:\n  elites: 9\n")
    assert _error(config_file=path).startswith(f"{path}: model.elites: ")


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["train.stepz=5"], "train.stepz", "unknown key"),
        (["bogus=1"], "bogus", "unknown key"),
        (["train.steps=abc"], "train.steps", "expected an integer"),
        (["train.steps=true"], "train.steps", "expected an integer"),
        (["train.steps=-5"], "train.steps", "must be positive"),
        (["agent.real_ratio=1.5"], "agent.real_ratio", "[0, 1]"),
        (["model.elites=8"], "model.elites", "ensemble_size"),
        (["model.weight_decay=[0.1]"], "model.weight_decay", "layers + 1"),
        (["model.layers=2"], "model.weight_decay", "layers + 1"),
        (["sac.lr=.nan"], "sac.lr", "expected a finite number, got nan"),
        (["model.improvement=.nan"], "model.improvement", "expected a finite number, got nan"),
        (["agent.real_ratio=.inf"], "agent.real_ratio", "expected a finite number, got inf"),
        (["model.weight_decay=[0, 0, 0, 0, .nan]"], "model.weight_decay", "expected a finite number"),
        (["train.steps=100000000000000000000"], "train.steps", "must be at most 9,007,199,254,740,991 in size"),
        (["train.seed=9223372036854775808"], "train.seed", "must be at most"),
        (["train.seed=2147483648"], "train.seed", "must be in [0, 2147483647]"),
        (["train.threads=20000"], "train.threads", "must be at most 1024"),
        (["train.device=cudaX"], "train.device", "expected auto, cpu, cuda or cuda:N, got 'cudaX'"),
        (["train.device=cuda:x"], "train.device", "expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_override_names_the_key(overrides: list[str], key: str, words: str) -> None:
    message = _error(preset="hopper", overrides=overrides)
    assert f" {key}: " in message, message
    assert words in message


def test_bad_command_line_values_name_the_key() -> None:
    assert "train.steps: must be positive" in _error(preset="hopper", steps=-1)
    assert "train.seed: must be in [0, 2147483647]" in _error(preset="hopper", seed=-1)
    assert "train.device: " in _error(preset="hopper", device="tpu")
    assert "--algo: expected mbpo, model-free, sac" in _error(preset="hopper", algo="ppo")


def test_override_without_equals_sign() -> None:
    message = _error(preset="hopper", overrides=["train.steps"])
    assert message.startswith("--set train.steps: expected KEY=VALUE")


def test_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "train:\n  steps: [1, 2\nmodel: {\n")
    message = _error(config_file=path)
    assert message.startswith(f"{path}: invalid YAML at line ")


def test_yaml_with_a_control_character_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "ctl.yaml", "train:\n  steps: 5\x07\n")
    assert _error(config_file=path).startswith(f"{path}: invalid YAML")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"train:\n  steps: \xff\xfe\n")
    assert _error(config_file=path).startswith(f"{path}: not UTF-8")


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.yaml", "- 1\n- 2\n")
    assert _error(config_file=path).startswith(f"{path}: expected a mapping")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert _error(config_file=path) == f"{path}: no such config file"


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert _error(config_file=tmp_path) == f"{tmp_path}: no such config file"


def test_unknown_preset_lists_the_known_ones() -> None:
    message = _error(preset="hoper")
    assert "unknown preset 'hoper'" in message
    assert "hopper" in message and "inverted_pendulum" in message


def test_unknown_base_preset_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.yaml", "base: hoper\n")
    message = _error(config_file=path)
    assert message.startswith(f"{path}: base: unknown preset 'hoper'")


def test_missing_base_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.yaml", "base: other.yaml\n")
    message = _error(config_file=path)
    assert message.startswith(f"{path}: base: ")
    assert "other.yaml" in message


def test_base_must_be_a_string(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.yaml", "base: [hopper]\n")
    assert _error(config_file=path).startswith(f"{path}: base: ")


def test_base_cycle(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    message = _error(config_file=a)
    assert "base: cycle" in message
    assert "a.yaml" in message and "b.yaml" in message


def test_base_self_cycle(tmp_path: Path) -> None:
    path = _write(tmp_path / "self.yaml", "base: self.yaml\ntrain:\n  steps: 5\n")
    message = _error(config_file=path)
    assert message.startswith(f"{path}: base: cycle")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
