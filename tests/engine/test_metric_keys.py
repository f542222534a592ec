"""The one table of metric keys (`mbpo_cli.config.metrics`): every key the engine emits is in it, TensorBoard tags
follow it, and a run without a model records no time for model phases.

The engine runs tiny real runs (every agent, an MBPO run with adaptive rollouts, a learned termination and the
diagnostics): a key added to the engine without a table entry fails here.
"""

import pytest
from dhmbpo_tiny import TINY_DHMBPO

from mbpo_cli.config import metrics
from mbpo_cli.config.load import build_config, resolve_config
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.events import EpochEvent, Event, RolloutEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import MODEL_PHASES, build_run

TINY = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 3},
    "rollout": {"batch_size": 200, "schedule": [1, 15, 1, 1], "train_freq": 50},
    "agent": {"updates_per_step": 2, "batch_size": 32},
    "sac": {"hidden": 32},
    "train": {"steps": 300, "epoch_length": 100, "init_steps": 100, "eval_episodes": 1, "seed": 3, "threads": 1},
}
MBPO = {**TINY, "env": {"id": "InvertedPendulum-v5", "termination": "learned"},
        "rollout": {**TINY["rollout"], "adaptive": True}}
MODEL_FREE = {
    "sac": {**TINY, "algo": "model_free"},
    "td3": {**TINY, "algo": "model_free", "agent": {**TINY["agent"], "name": "td3"}, "td3": {"hidden": 32}},
    "ddpg": {**TINY, "algo": "model_free", "agent": {**TINY["agent"], "name": "ddpg"}, "ddpg": {"hidden": 32}},
    "dqn": {**TINY, "algo": "model_free", "env": {"id": "CartPole-v1", "termination": "never"},
            "agent": {**TINY["agent"], "name": "dqn"}, "dqn": {"hidden": 32}},
}
MODEL_TIMES = {f"{metrics.TIME_PREFIX}{phase}" for phase in MODEL_PHASES}


def emitted(config: dict | Config) -> set[str]:
    """Every metric key a tiny run of `config` reports (epoch metrics and adaptive rollouts' metrics)."""
    keys: set[str] = set()

    def record(event: Event) -> None:
        if isinstance(event, EpochEvent | RolloutEvent):
            keys.update(event.metrics)

    train(build_run(config if isinstance(config, Config) else build_config(config)), record)
    return keys


def test_every_key_of_an_mbpo_run_is_in_the_table() -> None:
    keys = emitted(MBPO)
    assert {"eval_return", "model_holdout_loss", "done_holdout_recall", "rollout_length_p90", "diag_model_return",
            "diag_open_loop_h1", "alpha", "time_model", "time_rollout", "time_diag"} <= keys  # the run did it all
    assert sorted(k for k in keys if metrics.metric(k) is None) == []


def test_every_key_of_a_dhmbpo_run_is_in_the_table_and_it_times_no_diagnostics() -> None:
    config = resolve_config(preset="inverted_pendulum", algo="dhmbpo", steps=400,
                            overrides=["train.device=cpu", *TINY_DHMBPO])
    keys = emitted(config)
    assert {"eval_return", "critic_loss", "q_mean", "model_validation_nll", "time_model", "time_rollout"} <= keys
    assert sorted(k for k in keys if metrics.metric(k) is None) == []
    assert "time_diag" not in keys


@pytest.mark.parametrize("agent", sorted(MODEL_FREE))
def test_every_key_of_a_model_free_run_is_in_the_table_and_none_times_a_model(agent: str) -> None:
    keys = emitted(MODEL_FREE[agent])
    assert {"eval_return", "time_env", "time_agent", "time_eval"} <= keys
    assert sorted(k for k in keys if metrics.metric(k) is None) == []
    assert keys & MODEL_TIMES == set()


def test_tensorboard_tags() -> None:
    assert metrics.tensorboard_tag(metrics.EVAL_RETURN) == "eval/eval_return"
    assert metrics.tensorboard_tag("model_holdout_loss") == "model/model_holdout_loss"
    assert metrics.tensorboard_tag("time_env") == "time/time_env"
    assert metrics.tensorboard_tag("diag_open_loop_h12") == "diag/diag_open_loop_h12"
    assert metrics.tensorboard_tag("diag_open_loop_hx") == "other/diag_open_loop_hx"
    assert metrics.tensorboard_tag("my_custom_key") == "other/my_custom_key"


def test_the_table_names_each_key_once() -> None:
    keys = [m.key for m in (*metrics.METRICS, *metrics.FAMILIES)]
    assert len(keys) == len(set(keys))
    assert all(m.namespace is not metrics.Namespace.OTHER and m.description for m in metrics.METRICS)
