"""The Python API (`mbpo_cli.api`) as a notebook uses it: tiny runs (a few hundred env steps, small networks, one
thread) trained, resumed, listed and evaluated from Python, and checked against the command line on the same
registry (`mbpo runs list`, `mbpo eval`).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import servers
import yaml
from clihelpers import TINY_SETS, mbpo, one_error_line

from mbpo_cli import api
from mbpo_cli.api.run_config import api_config

pytestmark = pytest.mark.xdist_group("api")

TINY = {key.replace(".", "__"): yaml.safe_load(value) for key, _, value in (s.partition("=") for s in TINY_SETS)}
"""`TINY_SETS` as keyword overrides (`train__init_steps=200`, ...)."""


def make_pendulum() -> gym.Env:
    """InvertedPendulum acting in [0, 10] (the task's own range is [-3, 3]): a factory, and a range that an action
    left in the agent's [-1, 1] would miss."""
    return gym.wrappers.RescaleAction(gym.make("InvertedPendulum-v5"), np.float32(0.0), np.float32(10.0))


def make_other() -> gym.Env:
    """Another factory (its name is not the run's)."""
    return make_pendulum()


class Trained(types.SimpleNamespace):
    runs_dir: Path
    run: api.Run


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A notebook's run: a preset, a few keyword overrides, a name."""
    runs_dir = tmp_path_factory.mktemp("api") / "runs"
    run = api.train("inverted_pendulum", runs_dir=runs_dir, steps=300, device="cpu", name="notebook",
                    group="notebook-seeds", progress=False, **TINY)
    return Trained(runs_dir=runs_dir, run=run)


def episode_returns(policy: api.Policy, episodes: int, seed: int) -> tuple[list[float], list[np.ndarray]]:
    """Returns of `episodes` episodes reset with seeds `seed, seed + 1, ...`, acting with `predict`, and every
    action taken."""
    returns, actions = [], []
    env = policy.make_env()
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action = policy.predict(obs)
            actions.append(np.asarray(action))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns, actions


def test_a_notebook_run_is_in_the_registry_the_command_line_reads(trained: Trained) -> None:
    run = trained.run
    assert (run.status, run.env_steps, run.name) == (api.RunStatus.FINISHED, 300, "notebook")
    assert (run.run_dir / "config.yaml").is_file()
    listed = mbpo(trained.runs_dir, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.stdout) if r["id"] == run.id)
    assert (row["name"], row["status"], row["env_steps"]) == ("notebook", "finished", 300)
    assert row["last_eval_return"] == run.final_eval_return == run.last_eval_return
    assert row["command"].startswith("mbpo_cli.api.train(preset='inverted_pendulum', runs_dir=")
    assert "sac__hidden=32" in row["command"]
    assert row["config"]["sac"]["hidden"] == 32
    assert api.runs(trained.runs_dir) == api.runs(trained.runs_dir, group="notebook-seeds") == [run]
    assert api.runs(trained.runs_dir, group="other") == []


def test_if_exists_resume_leaves_a_finished_run_as_it_is(trained: Trained) -> None:
    again = api.train("inverted_pendulum", runs_dir=trained.runs_dir, steps=300, device="cpu", name="notebook",
                      if_exists="resume", progress=False, **TINY)
    assert (again.id, again.status, again.env_steps) == (trained.run.id, api.RunStatus.FINISHED, 300)


def test_a_config_object_or_file_takes_keyword_overrides_and_the_arguments_win(tmp_path: Path) -> None:
    notes: list[str] = []
    base = api_config(preset="inverted_pendulum", config=None, env=None, overrides={}, seed=None, steps=None,
                      device=None, say=notes.append).config
    from_object = api_config(preset=None, config=base, env=None, overrides={"sac__lr": 1e-3, "train__seed": 5},
                             seed=3, steps=None, device="cpu", say=notes.append).config
    assert (from_object.sac.lr, from_object.train.seed, from_object.train.device) == (1e-3, 3, "cpu")
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(base.to_dict()))
    from_file = api_config(preset=None, config=str(file), env=None, overrides={"rollout__schedule": [1, 5, 1, 2]},
                           seed=None, steps=None, device=None, say=notes.append).config
    assert from_file.rollout.schedule == (1, 5, 1, 2) and from_file.env == base.env
    assert notes == []


def test_predict_gives_mbpo_evals_returns_in_the_tasks_action_range(trained: Trained) -> None:
    result = mbpo(trained.runs_dir, "eval", trained.run.id, "--episodes", "3", "--seed", "7", "--json")
    assert result.exit_code == 0, result.output
    policy = api.load_policy(trained.run.id, trained.runs_dir)
    returns, actions = episode_returns(policy, 3, 7)
    assert returns == json.loads(result.stdout)["returns"]
    assert policy.checkpoint == "final:300"
    taken = np.stack(actions)
    assert taken.shape == (len(actions), 1) and taken.dtype == np.float32
    assert np.all((taken >= -3.0) & (taken <= 3.0))
    batch = policy.predict(np.zeros((5, 4)))
    assert batch.shape == (5, 1)
    np.testing.assert_array_equal(batch[0], policy.predict(np.zeros(4)))


def test_a_run_folder_and_the_best_checkpoint_load_too(trained: Trained) -> None:
    policy = api.load_policy(trained.run.run_dir, checkpoint="best")
    assert policy.checkpoint.startswith("best:") and policy.run_id == trained.run.id
    assert trained.run.load_policy(200).checkpoint == "periodic:200"


def test_metrics_come_back_as_rows_of_plain_values(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = api.metrics(trained.run.id, trained.runs_dir)
    evals = [row for row in rows if "eval_return" in row]
    assert [row["step"] for row in evals] == [100, 200, 300]
    assert evals[-1]["eval_return"] == trained.run.final_eval_return
    assert all(isinstance(value, float) for row in rows for key, value in row.items() if key != "step")
    assert trained.run.metrics("eval_return") == [{"step": r["step"], "eval_return": r["eval_return"]} for r in evals]
    with pytest.raises(ValueError, match=r"eval_retrun: not logged by the run.*did you mean eval_return"):
        api.metrics("notebook", trained.runs_dir, keys=["eval_retrun"])
    monkeypatch.setitem(sys.modules, "pandas", None)  # as where pandas is not installed
    with pytest.raises(ImportError, match=r"^metrics_frame needs pandas \(pip install 'mbpo-cli\[pandas\]'\)"):
        api.metrics_frame(trained.run.id, trained.runs_dir)


def test_metrics_frame_is_a_dataframe_where_pandas_is_installed(trained: Trained) -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        servers.skip_unless_available("pandas not installed: pip install 'mbpo-cli[pandas]'")
    frame = trained.run.metrics_frame(["eval_return", "alpha"])
    assert list(frame.columns) == ["step", "eval_return", "alpha"]
    assert frame.dropna(subset=["eval_return"])["step"].tolist() == [100, 200, 300]


def test_a_factory_run_acts_in_its_range_and_resumes_with_the_factory_handed_again(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    run = api.train("inverted_pendulum", env=make_pendulum, runs_dir=runs_dir, steps=200, device="cpu",
                    progress=False, env__termination="inverted_pendulum", **{**TINY, "train__init_steps": 100})
    assert run.env_id == f"python-factory/{make_pendulum.__module__}.make_pendulum"
    _, actions = episode_returns(run.load_policy(), 2, 0)
    taken = np.concatenate(actions)
    assert np.all((taken >= 0.0) & (taken <= 10.0)) and taken.max() > 1.0
    gym.registry.pop(run.env_id)  # as in another process, which the factory was not handed
    with pytest.raises(api.EnvError, match="hand the same factory again"):
        api.load_policy(run.id, runs_dir)
    assert "hand the same factory again" in one_error_line(mbpo(runs_dir, "eval", run.id))
    assert "hand the same factory again" in one_error_line(mbpo(runs_dir, "resume", run.id, "--steps", "300"))
    with pytest.raises(api.EnvError, match=r"this one would be python-factory/.*make_other"):
        api.resume(run.id, runs_dir, steps=300, env=make_other)
    resumed = api.resume(run.id, runs_dir, steps=300, env=make_pendulum, progress=False)
    assert (resumed.id, resumed.status, resumed.env_steps) == (run.id, api.RunStatus.FINISHED, 300)
    assert [row["step"] for row in resumed.metrics("eval_return")] == [100, 200, 300]


def test_an_instance_alone_trains_with_its_tasks_defaults_and_a_discrete_one_acts_with_ints(tmp_path: Path) -> None:
    instance = gym.make("CartPole-v1")
    run = api.train(env=instance, runs_dir=tmp_path, steps=200, device="cpu", progress=False,
                    **{**TINY, "train__init_steps": 100})
    assert (run.env_id, run.status) == ("python-instance/CartPole-v1", api.RunStatus.FINISHED)
    policy = run.load_policy()
    assert isinstance(policy.predict(np.zeros(4)), int)
    assert policy.predict(np.zeros((3, 4))).dtype.kind == "i"
    with pytest.raises(api.EnvError, match=r"env.kwargs .* cannot configure an environment instance"):
        api.train(env=instance, runs_dir=tmp_path, env__kwargs={"render_mode": None}, progress=False)


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"preset": "hopper", "config": "x.yaml"}, api.ConfigError, r"choose one of preset= and config="),
    ({"preset": "hopper", "env": "Hopper-v5"}, api.ConfigError, r"or set the task of a preset with env__id="),
    ({"env": 42}, api.EnvError, r"env: expected a gymnasium environment id, .* got a int"),
    ({"preset": "hopper", "sac__lrr": 1.0}, api.ConfigError, r"^train\(\): sac.lrr: unknown key"),
    ({"preset": "hopper", "sac__": 1.0}, api.ConfigError, r"a config key is SECTION__KEY"),
    ({"preset": "hopper", "steps": 0}, api.ConfigError, r"^train\(\): train.steps: must be positive"),
    ({"preset": "hopper", "if_exists": "maybe"}, api.ConfigError, r"if_exists=: expected error or resume"),
    ({"preset": "hopper", "if_exists": "resume"}, api.ConfigError, r"if_exists resume needs name="),
])
def test_bad_train_arguments_are_refused_before_anything_is_written(
        tmp_path: Path, arguments: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        api.train(runs_dir=tmp_path, **arguments)
    assert not any(tmp_path.iterdir())


def test_bad_arguments_about_runs_are_refused(trained: Trained, tmp_path: Path) -> None:
    with pytest.raises(api.RegistryError, match="no run 'notebook': there is no registry"):
        api.metrics("notebook", tmp_path)
    with pytest.raises(api.RegistryError, match="no run 'nothere'"):
        api.load_policy("nothere", trained.runs_dir)
    with pytest.raises(ValueError, match="checkpoint=: expected 'latest', 'best' or an env step"):
        api.load_policy(trained.run.id, trained.runs_dir, checkpoint="newest")
    with pytest.raises(api.EnvError, match="env= is only for runs whose environment a Python factory"):
        api.load_policy(trained.run.id, trained.runs_dir, env=make_pendulum)
    with pytest.raises(ValueError, match=r"not a run folder"):
        api.load_policy(tmp_path, trained.runs_dir)
    policy = api.load_policy(trained.run.id, trained.runs_dir)
    with pytest.raises(ValueError, match=r"predict: expected one observation of shape \(4,\) .* got shape \(3,\)"):
        policy.predict(np.zeros(3))
    assert api.runs(tmp_path / "empty") == []
