"""Tests for `mbpo tune` (the package mbpo_cli.sweeps.tune): the study file's validation, a real small
study on InvertedPendulum that prunes a hopeless trial and prints a best config `mbpo train --config` accepts, Ctrl-C
and --resume, and the study's tables beside the registry's in SQLite and PostgreSQL.

The tests that run Optuna skip where it is not installed (the `tune` extra), and fail instead where
$MBPO_REQUIRE_SERVERS is set (CI)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import servers
import yaml
from clihelpers import TINY_SETS, mbpo, one_error_line

from mbpo_cli.config.load import ConfigError, resolve_config
from mbpo_cli.runs.process import run_lock
from mbpo_cli.runs.registry import Registry
from mbpo_cli.runs.registry.tables import SqlBase
from mbpo_cli.sweeps.executors import mbpo_command
from mbpo_cli.sweeps.tune.best import best_trial
from mbpo_cli.sweeps.tune.execution import task_argv
from mbpo_cli.sweeps.tune.following import end, follow
from mbpo_cli.sweeps.tune.layout import run_name, trial_file, variant_name
from mbpo_cli.sweeps.tune.objective import Direction, Objective
from mbpo_cli.sweeps.tune.planning import ask, plan_tasks, suggest
from mbpo_cli.sweeps.tune.search import PrunerSpec, SamplerSpec
from mbpo_cli.sweeps.tune.space import ParamType
from mbpo_cli.sweeps.tune.spec import DEFAULT_TRIALS, StudySpec, build_spec
from mbpo_cli.sweeps.tune.storage import create_study, load_spec, open_study
from mbpo_cli.sweeps.tune.study_file import read_study_file
from mbpo_cli.sweeps.tune.trials import Action, TrialState, TrialTask

TINY_ARGS = ["--steps", "300", "--device", "cpu", *(arg for item in TINY_SETS for arg in ("--set", item))]
"""The fixed part of a tiny study's trials (300 env steps, evaluations every 100)."""
PRUNED_STEPS = 3000
"""The small study's trial length: the hopeless trial is pruned at its first evaluation (step 100), which the tuner
sees within about a second; a tiny run takes several seconds for these steps, so it is stopped well before its end."""
PRUNED_ARGS = [*TINY_ARGS[:1], str(PRUNED_STEPS), *TINY_ARGS[2:]]
HOPELESS = {"max_episode_steps": 2}
"""env.kwargs whose episodes end after 2 steps: a return of at most 2 (InvertedPendulum pays 1 a step)."""
STUDY = {"base": "inverted_pendulum",
         "space": {"env.kwargs": {"type": "categorical", "choices": [{}, HOPELESS]}},
         "sampler": "grid", "pruner": {"type": "threshold", "lower": 2.5}}
"""Two trials, each tried once (a grid): the hopeless one is pruned at its first evaluation (2 < 2.5); an upright
pendulum under any policy lasts longer than 2 steps, so the other completes."""


@pytest.fixture
def optuna_installed() -> None:
    """Skip (fail under $MBPO_REQUIRE_SERVERS) where the `tune` extra is missing."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        servers.skip_unless_available("optuna not installed: pip install 'mbpo-cli[tune]'")


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# The study file (no Optuna needed)
# ---------------------------------------------------------------------------------------------


def test_a_study_file_is_read_with_its_defaults_and_shorthands(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("base: hopper\nspace:\n  sac.lr: {type: float, low: 1e-4, high: 1e-3, log: true}\n"
                    "  agent.updates_per_step: {type: int, low: 5, high: 20}\n"
                    "  rollout.schedule: {type: categorical, choices: [[20, 100, 1, 1], [20, 100, 1, 5]]}\n"
                    "  sac.hidden: [128, 256]\nmetric: eval/eval_return\nlast: 3\n")
    study = read_study_file(path)
    assert [p.key for p in study.space] == ["sac.lr", "agent.updates_per_step", "rollout.schedule", "sac.hidden"]
    lr, updates, schedule, hidden = study.space
    assert (lr.type, lr.low, lr.high, lr.log) == (ParamType.FLOAT, 1e-4, 1e-3, True)  # YAML 1.1's "1e-4"
    assert updates.grid() == list(range(5, 21))
    assert schedule.encoded and schedule.decode(schedule.optuna_choices()[1]) == [20, 100, 1, 5]
    assert not hidden.encoded and hidden.optuna_choices() == [128, 256]
    assert study.objective == Objective("eval_return", 3, Direction.MAXIMIZE)
    assert study.sampler == SamplerSpec() and study.pruner == PrunerSpec()
    assert study.base_source() == ("hopper", None)
    spec = build_spec(study, resolve_config(preset="hopper"), "hopper", {}, None, None)
    assert spec.trials == DEFAULT_TRIALS and spec.name.startswith("s-tune-")
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    config = spec.trial_config({"sac.lr": 5e-4, "rollout.schedule": [20, 100, 1, 5]})
    assert config.sac.lr == 5e-4 and config.rollout.schedule == (20, 100, 1, 5)


def test_the_objective_is_the_mean_of_the_last_evaluations_at_each_step() -> None:
    objective = Objective(last=2)
    values = [(100, 1.0), (200, 3.0), (300, 8.0)]
    assert objective.running(values) == [(100, 1.0), (200, 2.0), (300, 5.5)]
    assert objective.final(values) == 5.5 and objective.final([]) is None
    assert Objective().final(values) == 8.0


@pytest.mark.parametrize(("text", "message"), [
    ("base: hopper\n", "space: missing"),
    ("space: {sac.lr: [1, 2]}\nsearch: 3\n", "search: unknown key (known: base, space,"),
    ("space: {sac.lr: {type: gaussian}}\n", "space.sac.lr: type: expected float, int or categorical, got 'gaussian'"),
    ("space: {sac.lr: {type: float, low: 1e-3, high: 1e-4}}\n", "space.sac.lr: low must be below high"),
    ("space: {sac.lr: {type: float, low: 0, high: 1, log: true}}\n", "space.sac.lr: low must be > 0 with log: true"),
    ("space: {sac.lr: {type: float, low: 0.1, high: 1, log: true, step: 0.1}}\n", "step and log: true cannot go"),
    ("space: {sac.lr: {type: float, high: 1}}\n", "space.sac.lr: low: missing"),
    ("space: {sac.lr: {type: float, low: 0.1, high: 1, choices: [1]}}\n", "choices: unknown key for type float"),
    ("space: {sac.hidden: {type: int, low: 1.5, high: 3}}\n", "space.sac.hidden: low: expected an integer, got 1.5"),
    ("space: {sac.hidden: {type: categorical, choices: []}}\n", "choices: expected a non-empty list"),
    ("space: {sac.hidden: [64, 64]}\n", "space.sac.hidden: choices: 64 is given twice"),
    ("space: {'sac lr': [1, 2]}\n", "expected a dotted config key"),
    ("space: {sac.hidden: [64, 128]}\nmetric: reward\n", "metric: unknown metric 'reward'"),
    ("space: {sac.hidden: [64, 128]}\ndirection: up\n", "direction: expected maximize or minimize, got 'up'"),
    ("space: {sac.hidden: [64, 128]}\nlast: 0\n", "last: must be in [1, 1,000], got 0"),
    ("space: {sac.hidden: [64, 128]}\ntrials: 0\n", "trials: must be in [1, 10,000], got 0"),
    ("space: {sac.hidden: [64, 128]}\npruner: {type: threshold}\n", "the threshold pruner needs lower, upper"),
    ("space: {sac.hidden: [64, 128]}\npruner: {type: median, lower: 3}\n", "pruner.lower: not a setting of the "
                                                                           "median pruner"),
    ("space: {sac.hidden: [64, 128]}\nsampler: cmaes\n", "sampler.type: expected tpe, random, grid, got 'cmaes'"),
    ("space: {sac.lr: {type: float, low: 0.1, high: 1}}\nsampler: grid\n", "space.sac.lr: sampler grid needs"),
    ("space: [sac.lr]\n", "space: expected a mapping of config keys"),
    ("space: {sac.hidden: [64, 128]\n", "invalid YAML"),
])
def test_a_bad_study_file_is_one_line_naming_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_study_file(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("space", "trials", "message"), [
    ({"sac.bogus": [1, 2]}, None, "space.sac.bogus: 1: sac.bogus: unknown key"),
    ({"sac.lr": {"type": "float", "low": -1.0, "high": 1.0}}, None, "space.sac.lr: -1: sac.lr: must be positive"),
    ({"agent.real_ratio": [0.5, 2.0]}, None, "space.agent.real_ratio: 2: agent.real_ratio: must be in [0, 1]"),
    ({"sac.hidden": [64, 128]}, 3, "trials: 3 trials, but the grid has 2 points"),
])
def test_a_space_the_config_refuses_is_one_line(tmp_path: Path, space: dict[str, Any], trials: int | None,
                                                message: str) -> None:
    path = write(tmp_path / "s.yaml", {"space": space, "sampler": "grid"} if trials else {"space": space})
    with pytest.raises(ConfigError, match=r"^.*" + message.replace("[", r"\[").replace("]", r"\]")):
        build_spec(read_study_file(path), resolve_config(preset="hopper"), "hopper", {}, trials, None)


def test_command_line_errors_are_one_line_and_write_nothing(tmp_path: Path, optuna_installed: None) -> None:
    runs = tmp_path / "runs"
    study = write(tmp_path / "s.yaml", STUDY)
    cases = [
        (["tune"], "give a study file (mbpo tune STUDY.yaml) or --resume STUDY"),
        (["tune", str(study), "--preset", "hopper"], "base: inverted_pendulum and --preset: name the fixed part once"),
        (["tune", str(write(tmp_path / "n.yaml", {"space": STUDY["space"]}))], "no base: name the fixed part"),
        (["tune", str(study), "--trials", "3"], "--trials: 3 trials, but the grid has 2 points"),
        (["tune", str(study), "--jobs", "0"], "--jobs: must be at least 1"),
        (["tune", str(study), "--out", str(runs / "registry.db")], "that is the registry database"),
        (["tune", str(study), "--out", str(runs / "tunes" / "best.yaml")], "inside the studies' folder"),
        (["tune", "--resume", "nope", "--preset", "hopper"], "--resume STUDY takes the study from the registry"),
        (["tune", "--resume", "nope"], "no study 'nope'"),
    ]
    for args, message in cases:
        line = one_error_line(mbpo(runs, *args))
        assert message in line, line
    assert not runs.exists()


def test_without_optuna_the_command_is_one_line_naming_the_extra(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna fails, as where it is not installed
    line = one_error_line(mbpo(tmp_path / "runs", "tune", str(write(tmp_path / "s.yaml", STUDY))))
    assert line == "error: mbpo tune needs Optuna: pip install 'mbpo-cli[tune]'"
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# The study's tables in the registry's database
# ---------------------------------------------------------------------------------------------


def test_optunas_tables_never_take_a_registry_tables_name(optuna_installed: None) -> None:
    from optuna.storages._rdb import models

    optuna_tables = {*models.BaseModel.metadata.tables, "alembic_version"}
    assert not optuna_tables & set(SqlBase.metadata.tables)


def _study_beside_the_registry(registry: Registry, tmp_path: Path) -> None:
    """Create a study in `registry`'s database, give it a finished trial, and read both back."""
    path = write(tmp_path / "s.yaml", {"space": {"sac.lr": {"type": "float", "low": 1e-4, "high": 1e-3}}})
    spec = build_spec(read_study_file(path), resolve_config(preset="hopper"), "hopper", {}, 2, "pg")
    create_study(registry, spec)
    study = open_study(registry, spec)
    trial = study.ask()
    lr = suggest(trial, spec.space[0])
    trial.report(1.0, 100)
    study.tell(trial, 2.0)
    assert load_spec(registry, "pg") == spec
    again = open_study(registry, spec)
    [frozen] = again.get_trials()
    assert (frozen.params, frozen.value, frozen.intermediate_values) == ({"sac.lr": lr}, 2.0, {100: 1.0})
    assert registry.group_info("pg") is not None and registry.list_runs() == []  # the registry's tables still work
    with pytest.raises(Exception, match="already exists"):
        create_study(registry, spec)


def test_a_study_lives_in_a_postgresql_registry(postgres_url: str, tmp_path: Path, optuna_installed: None) -> None:
    with Registry(postgres_url) as registry:
        _study_beside_the_registry(registry, tmp_path)


def test_a_stopped_sessions_trials_continue_by_what_their_runs_kept(tmp_path: Path, optuna_installed: None) -> None:
    """Five trials left running by a stopped session: the run that finished has its trial told now; a run with a
    checkpoint resumes; one training in another live process is left to it; one with nothing to resume from is
    deleted and trained again, as is a trial that never got a run."""
    runs = tmp_path / "runs"
    registry = Registry.open(runs)
    path = write(tmp_path / "st.yaml", {"space": {"sac.lr": {"type": "float", "low": 1e-4, "high": 1e-3}},
                                        "pruner": "none"})
    base = resolve_config(preset="inverted_pendulum")
    spec = build_spec(read_study_file(path), base, "inverted_pendulum", {}, 5, "st")
    create_study(registry, spec)
    study = open_study(registry, spec)
    asked = [ask(study, spec, runs) for _ in range(5)]

    def run_of(task: TrialTask, status: str, checkpoint: bool, evals: list[tuple[int, float]]) -> str:
        run = registry.create_run(name=run_name("st", task.number), preset="inverted_pendulum",
                                  env_id=base.env.id, algo="mbpo", seed=0,
                                  config=spec.trial_config(task.values).to_dict(), device="cpu", command="test",
                                  target_steps=base.train.steps, group="st", variant=variant_name(task.number))
        registry.log_metrics(run.id, [(step, "eval_return", value) for step, value in evals])
        if checkpoint:
            registry.add_checkpoint(run.id, step=100, path="x", bytes=1, sha256="0", kind="periodic")
        if status != "running":
            registry.set_status(run.id, status)
        return run.id

    finished = run_of(asked[0], "finished", True, [(100, 3.0), (200, 5.0)])
    resumable = run_of(asked[1], "interrupted", True, [(100, 1.0)])
    busy = run_of(asked[2], "running", True, [])
    empty = run_of(asked[3], "interrupted", False, [])
    assert registry.get_run(empty).status == "interrupted"
    trial_file(runs, "st", 3).unlink()
    (runs / busy).mkdir(parents=True)
    with run_lock(runs / busy):
        again = open_study(registry, spec)
        planned = plan_tasks(again, spec, registry, runs)
    P, T = TrialState, Action
    assert [(t.state, t.action, t.run_id) for t in planned] == [
        (P.COMPLETE, T.TRAIN, finished), (P.PENDING, T.RESUME, resumable), (P.BUSY, T.TRAIN, busy),
        (P.PENDING, T.TRAIN, None), (P.PENDING, T.TRAIN, None)]
    [told] = [t for t in again.get_trials() if t.number == asked[0].number]
    assert (told.state.name, told.value, told.intermediate_values) == ("COMPLETE", 5.0, {100: 3.0, 200: 5.0})
    assert [r.id for r in registry.runs_in_group("st")] == [finished, resumable, busy]  # the empty one is gone
    assert trial_file(runs, "st", 3).is_file()  # written again for its new run
    assert task_argv(planned[1], spec, runs, 3)[2:] == ["resume", resumable, "--json"]
    new = task_argv(planned[4], spec, runs, 3)[2:]
    assert new[:3] == ["train", "--config", str(trial_file(runs, "st", 4).absolute())]
    assert new[3:] == ["--set", "train.threads=3", "--group", "st", "--variant", "trial-4", "--name", "st-t4",
                       "--if-exists", "resume", "--json"]
    assert best_trial(spec, planned).number == asked[0].number  # type: ignore[union-attr]


class StopRecorder:
    """An executor that runs nothing and records the runs it is asked to stop."""

    def __init__(self) -> None:
        self.stopped: list[Any] = []

    def submit(self, args: list[str], log: Path) -> Any:
        raise AssertionError("nothing is submitted here")

    def poll(self, handle: Any) -> int | None:
        return None

    def interrupt(self, handle: Any) -> None:
        self.stopped.append(handle)


def test_a_pruned_trial_is_told_at_once_and_reports_nothing_while_it_stops(tmp_path: Path,
                                                                           optuna_installed: None) -> None:
    runs = tmp_path / "runs"
    registry = Registry.open(runs)
    path = write(tmp_path / "p.yaml", {"space": {"sac.lr": {"type": "float", "low": 1e-4, "high": 1e-3}},
                                       "pruner": {"type": "threshold", "lower": 2.0}})
    base = resolve_config(preset="inverted_pendulum")
    spec = build_spec(read_study_file(path), base, "inverted_pendulum", {}, 1, "p")
    create_study(registry, spec)
    study = open_study(registry, spec)
    task = ask(study, spec, runs)
    task.state, task.handle = TrialState.RUNNING, "the run"
    run = registry.create_run(name=run_name("p", 0), preset="inverted_pendulum", env_id=base.env.id,
                              algo="mbpo", seed=0, config=spec.trial_config(task.values).to_dict(), device="cpu",
                              command="test", target_steps=base.train.steps, group="p", variant="trial-0")
    executor = StopRecorder()
    registry.log_metrics(run.id, [(100, "eval_return", 3.0)])
    follow(study, spec, task, registry, executor)
    assert task.state is TrialState.RUNNING and executor.stopped == []
    registry.log_metrics(run.id, [(200, "eval_return", 1.0)])
    follow(study, spec, task, registry, executor)
    assert task.state is TrialState.PRUNING and executor.stopped == ["the run"]
    [trial] = study.get_trials()
    assert (trial.state.name, trial.intermediate_values) == ("PRUNED", {100: 3.0, 200: 1.0})
    registry.log_metrics(run.id, [(300, "eval_return", 0.5)])  # the run's last epoch ends as it stops
    follow(study, spec, task, registry, executor)
    end(study, spec, task, 130, registry)
    assert task.state is TrialState.PRUNED and executor.stopped == ["the run"]
    assert study.get_trials()[0].intermediate_values == {100: 3.0, 200: 1.0}


# ---------------------------------------------------------------------------------------------
# A real small study
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    try:
        import optuna  # noqa: F401
    except ImportError:
        servers.skip_unless_available("optuna not installed: pip install 'mbpo-cli[tune]'")
    folder = tmp_path_factory.mktemp("tune")
    runs, best = folder / "runs", folder / "best.yaml"
    result = mbpo(runs, "tune", str(write(folder / "study.yaml", STUDY)), *PRUNED_ARGS, "--name", "ip",
                  "--out", str(best), "--json")
    assert result.exit_code == 0, result.output
    return runs, best, json.loads(result.stdout)


@pytest.mark.xdist_group("tuned")
def test_a_small_study_prunes_the_hopeless_trial_and_completes_the_other(
        tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    runs, _, data = tuned
    by_kwargs = {json.dumps(t["params"]["env.kwargs"]): t for t in data["trials"]}
    pruned, complete = by_kwargs[json.dumps(HOPELESS)], by_kwargs["{}"]
    assert (pruned["state"], complete["state"]) == ("pruned", "complete")
    assert pruned["value"] <= 2.0 < 2.5 < complete["value"]
    assert data["best"]["number"] == complete["number"] and data["best"]["value"] == complete["value"]
    registry = Registry.open(runs)
    runs_by_id = {r.id: r for r in registry.runs_in_group("ip")}
    assert set(runs_by_id) == {pruned["run_id"], complete["run_id"]}
    # the pruned run stopped cleanly before its end, with a checkpoint (`mbpo resume` could continue it)
    stopped = runs_by_id[pruned["run_id"]]
    assert stopped.status == "interrupted" and stopped.env_steps < PRUNED_STEPS
    assert stopped.variant == f"trial-{pruned['number']}"
    assert any(c.kind == "periodic" for c in registry.checkpoints(stopped.id))
    completed = runs_by_id[complete["run_id"]]
    assert completed.status == "finished" and completed.env_steps == PRUNED_STEPS
    assert registry.group_info("ip")["kind"] == "tune"  # type: ignore[index]


@pytest.mark.xdist_group("tuned")
def test_the_study_is_stored_in_the_registry_database(tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    import optuna

    runs, _, data = tuned
    study = optuna.load_study(study_name="ip", storage=f"sqlite:///{runs / 'registry.db'}")
    states = sorted(t.state.name for t in study.get_trials())
    assert states == ["COMPLETE", "PRUNED"]
    assert study.best_trial.number == data["best"]["number"]
    # nothing beside the registry's file: the trials' runs and the study's folder of configs and logs
    assert {p.name for p in runs.iterdir() if not p.name.startswith("registry.db")} == {
        *(t["run_id"] for t in data["trials"]), "tunes"}
    assert sorted(p.name for p in (runs / "tunes" / "ip").iterdir()) == ["configs", "lock", "logs"]


@pytest.mark.xdist_group("tuned")
def test_the_best_config_trains_as_the_best_trial_did(tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    runs, best, data = tuned
    text = best.read_text()
    assert text.startswith(f"# best of study ip: trial {data['best']['number']}, eval_return ")
    assert yaml.safe_load(text) == data["best"]["config"] and data["best"]["config"]["base"] == "inverted_pendulum"
    result = mbpo(runs, "train", "--config", str(best), "--print-config")
    assert result.exit_code == 0, result.output
    recorded = Registry.open(runs).get_run(data["best"]["run_id"]).config
    assert yaml.safe_load(result.stdout) == recorded
    # the same study again is refused, pointing at --resume; resuming a done study only reports it
    line = one_error_line(mbpo(runs, "tune", str(best.with_name("study.yaml")), *TINY_ARGS, "--name", "ip"))
    assert "already exists" in line and "--resume ip" in line
    assert "--trials 1: study ip already has 2 trials" in one_error_line(
        mbpo(runs, "tune", "--resume", "ip", "--trials", "1"))
    again = mbpo(runs, "tune", "--resume", "ip", "--json")
    assert again.exit_code == 0, again.output
    assert [t["state"] for t in json.loads(again.stdout)["trials"]] == [t["state"] for t in data["trials"]]
    assert all(t["earlier"] for t in json.loads(again.stdout)["trials"])


# ---------------------------------------------------------------------------------------------
# Ctrl-C, then --resume
# ---------------------------------------------------------------------------------------------


def _wait_for_a_checkpoint(runs: Path, tuner: subprocess.Popen[str]) -> str:
    """The id of the first trial's run once it has a periodic checkpoint (it is then mid-run)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and tuner.poll() is None:
        if (runs / "registry.db").is_file():
            with Registry.open(runs) as registry:
                for run in registry.list_runs(group="cc"):
                    if any(c.kind == "periodic" for c in registry.checkpoints(run.id)):
                        assert registry.get_run(run.id).env_steps < 500, "the trial ended before Ctrl-C: lengthen it"
                        return run.id
        time.sleep(0.1)
    raise AssertionError(f"no trial reached a checkpoint: {tuner.communicate()}")


def test_ctrl_c_stops_the_study_and_resume_completes_it(tmp_path: Path, optuna_installed: None) -> None:
    runs = tmp_path / "runs"
    study = write(tmp_path / "cc.yaml", {"base": "inverted_pendulum", "trials": 2, "pruner": "none",
                                         "sampler": {"type": "random", "seed": 1},
                                         "space": {"sac.lr": {"type": "float", "low": 1e-4, "high": 1e-3}}})
    args = [*TINY_ARGS[:1], "500", *TINY_ARGS[2:]]
    env = {k: v for k, v in os.environ.items() if k != "MBPO_REGISTRY_URL"}
    tuner = subprocess.Popen([*mbpo_command(), "--runs-dir", str(runs), "tune", str(study), *args, "--name", "cc",
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = _wait_for_a_checkpoint(runs, tuner)
    tuner.send_signal(signal.SIGINT)
    out, err = tuner.communicate(timeout=120)
    assert tuner.returncode == 130, err
    assert "interrupted: continue with: mbpo --runs-dir" in err and "tune --resume cc" in err
    stopped = json.loads(out)
    assert stopped["interrupted"] and [(t["state"], t["run_id"]) for t in stopped["trials"]] == [("interrupted", first)]
    with Registry.open(runs) as registry:
        assert registry.get_run(first).status == "interrupted"

    result = mbpo(runs, "tune", "--resume", "cc", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(t["number"], t["state"]) for t in data["trials"]] == [(0, "complete"), (1, "complete")]
    assert data["trials"][0]["run_id"] == first  # its run continued, not trained again
    with Registry.open(runs) as registry:
        members = registry.runs_in_group("cc")
        assert [(r.status, r.env_steps) for r in members] == [("finished", 500)] * 2
    import optuna

    trials = optuna.load_study(study_name="cc", storage=f"sqlite:///{runs / 'registry.db'}").get_trials()
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" and math.isfinite(t.value or math.nan) for t in trials)
