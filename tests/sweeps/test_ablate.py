"""Tests for `mbpo ablate` (mbpo_cli.ablation): plans, validation, a real small ablation, interrupt and resume."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelpers import mbpo, one_error_line

from mbpo_cli.cli.ablate import Placement, resume_command
from mbpo_cli.config.load import ConfigError, resolve_config
from mbpo_cli.runs.outage import OUTAGE_EXIT_CODE
from mbpo_cli.runs.process import StopSignals
from mbpo_cli.runs.registry import Registry
from mbpo_cli.sweeps import ablation, executors, variants

TINY = ["train.init_steps=100", "train.epoch_length=100", "agent.updates_per_step=1", "rollout.batch_size=300",
        "model.max_epochs=3", "train.eval_episodes=1", "sac.hidden=32", "model.hidden=32"]
TINY_ARGS = [arg for s in TINY for arg in ("--set", s)]
GROUP = "ip-abl"


def plan_for(flags: variants.VariantFlags, sets: list[str] | None = None) -> variants.Plan:
    control = resolve_config(preset="inverted_pendulum", overrides=sets)
    return variants.build_plan(control, {"preset": "inverted_pendulum"}, flags, [0, 1], "g")


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


def test_the_double_horizon_comparison_is_one_plan() -> None:
    """`--algo dhmbpo --no-training-rollout --no-distribution-rollout --mbpo`: DHMBPO, its two parents and MBPO."""
    control = resolve_config(preset="hopper", algo="dhmbpo")
    flags = variants.VariantFlags(no_training_rollout=True, no_distribution_rollout=True, mbpo=True)
    plan = variants.build_plan(control, {"preset": "hopper", "algo": "dhmbpo"}, flags, [0], "g")
    assert [v.name for v in plan.variants] == ["control", "no-training-rollout", "no-distribution-rollout", "mbpo"]
    assert plan.diffs()["no-training-rollout"] == {"dhmbpo.training_horizon": (5, 0)}
    assert plan.diffs()["no-distribution-rollout"] == {"dhmbpo.distribution_horizon": (20, 0)}
    assert plan.diffs()["mbpo"] == {"algo": ("dhmbpo", "mbpo")}
    assert plan.configs["mbpo"]["agent"]["updates_per_step"] == 20  # the preset's MBPO, G = 20


def test_double_horizon_variants_need_a_dhmbpo_control_and_mbpo_another() -> None:
    for flags, flag in ((variants.VariantFlags(no_training_rollout=True), "--no-training-rollout"),
                        (variants.VariantFlags(no_distribution_rollout=True), "--no-distribution-rollout"),
                        (variants.VariantFlags(mbpo=True), "--mbpo")):
        with pytest.raises(ConfigError, match=f"^{flag}: "):
            plan_for(flags)


def test_flags_give_the_expected_variants_and_diffs() -> None:
    flags = variants.VariantFlags(
        no_model=True, rollout_lengths=[1, 5], from_initial_states=True, real_ratios=[0.5], ensemble_sizes=[1, 3],
        deterministic_model=True, no_elites=True, adaptive_horizon=True, updates_per_step=[5],
        custom=["wide:model.hidden=400,rollout.schedule=[0,0,3,3]"])
    plan = plan_for(flags, ["agent.updates_per_step=7"])
    names = [v.name for v in plan.variants]
    assert names == ["control", "no-model", "k=1", "k=5", "from-initial-states", "real-ratio=0.5", "single-model",
                     "ensemble=3", "deterministic-model", "no-elites", "adaptive-horizon", "G=5", "wide"]
    diffs = plan.diffs()
    assert diffs["control"] == {}
    # the paper's no-model ablation keeps G (here the --set value), unlike the G=1 SAC baseline
    assert diffs["no-model"] == {"algo": ("mbpo", "model_free")}
    assert plan.configs["no-model"]["agent"]["updates_per_step"] == 7
    assert diffs["k=5"] == {"rollout.schedule": ([1, 15, 1, 1], [0, 0, 5, 5])}
    assert diffs["from-initial-states"] == {"rollout.from_initial_states": (False, True)}
    assert diffs["real-ratio=0.5"] == {"agent.real_ratio": (0.05, 0.5)}
    assert diffs["single-model"] == {"model.ensemble_size": (7, 1), "model.elites": (5, 1)}
    assert diffs["ensemble=3"] == {"model.ensemble_size": (7, 3), "model.elites": (5, 3)}
    assert diffs["deterministic-model"] == {"model.deterministic": (False, True)}
    assert diffs["no-elites"] == {"model.use_elites": (True, False)}
    assert diffs["adaptive-horizon"] == {"rollout.adaptive": (False, True)}
    assert diffs["G=5"] == {"agent.updates_per_step": (7, 5)}
    assert diffs["wide"] == {"model.hidden": (200, 400), "rollout.schedule": ([1, 15, 1, 1], [0, 0, 3, 3])}
    assert plan.total_env_steps() == 13 * 2 * 20_000
    # the preset rolls out 1 step at every epoch, so k=1 repeats the control; k=5 does not
    assert plan.same_as_control() == ["k=1"]
    # the plan survives the group's info (JSON) round trip
    again = variants.Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.configs == plan.configs and again.variants == plan.variants and again.seeds == [0, 1]


def test_a_variant_can_swap_the_base_agent() -> None:
    plan = plan_for(variants.VariantFlags(no_model=True, custom=["td3:agent.name=td3"]))
    diffs = plan.diffs()
    assert diffs["td3"] == {"agent.name": ("sac", "td3")}
    assert diffs["no-model"] == {"algo": ("mbpo", "model_free")}
    cartpole = variants.build_plan(resolve_config(preset="cartpole"), {"preset": "cartpole"},
                                   variants.VariantFlags(no_model=True), [0], "c")
    assert cartpole.configs["no-model"]["agent"] == cartpole.control["agent"]  # DQN at the same G, without a model


def test_without_a_variant_the_plan_is_a_seed_sweep_of_the_control() -> None:
    plan = plan_for(variants.VariantFlags())
    assert [v.name for v in plan.variants] == ["control"] and plan.seeds == [0, 1]


@pytest.mark.parametrize(("flags", "message"), [
    (variants.VariantFlags(custom=["x:algo=model_free,done_model.hidden=10"]), "algo=model_free (no model) cannot be"),
    (variants.VariantFlags(custom=["x:algo=sac,model.hidden=10"]), "algo=sac (no model) cannot be combined"),
    (variants.VariantFlags(custom=["nonsense"]), "expected NAME:KEY=VALUE"),
    (variants.VariantFlags(custom=["x:model.bogus=1"]), "model.bogus: unknown key"),
    (variants.VariantFlags(no_model=True, custom=["no-model:algo=sac"]), "given twice"),
    (variants.VariantFlags(ensemble_sizes=[0]), "--ensemble-size"),
])
def test_bad_plans_are_config_errors(flags: variants.VariantFlags, message: str) -> None:
    with pytest.raises(ConfigError, match="^.*" + message.replace("(", r"\(").replace(")", r"\)")):
        plan_for(flags)


@pytest.mark.parametrize(("args", "message"), [
    (["--rollout-length", "0"], "--rollout-length: must be at least 1, got 0"),
    (["--real-ratio", "1.5"], "--real-ratio: must be in [0, 1], got 1.5"),
    (["--variant", "x:algo=sac,rollout.schedule=[0,0,5,5]"], "variant x: algo=sac (no model) cannot be combined"),
    (["--no-model", "--jobs", "0"], "--jobs: must be at least 1"),
    (["--no-model", "--set", "agent.real_ratio=2"], "agent.real_ratio: must be in [0, 1]"),
    (["--no-model", "--executor", "slurm"], "--executor: expected local or ray, got 'slurm'"),
    (["--no-model", "--address", "auto", "--gpus-per-run", "1"], "--address, --gpus-per-run go with --executor ray"),
    (["--no-model", "--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run: must be > 0, got 0"),
    (["--no-model", "--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run: must be >= 0, got -1"),
])
def test_invalid_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    runs = tmp_path / "runs"
    line = one_error_line(mbpo(runs, "ablate", "--preset", "inverted_pendulum", *args))
    assert message in line
    assert not runs.exists()


def test_executor_ray_without_ray_is_one_line_naming_the_extra(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    runs = tmp_path / "runs"
    line = one_error_line(mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--no-model", "--executor", "ray",
                               "--name", "g"), code=2)
    assert line == "error: --executor ray needs Ray: pip install 'mbpo-cli[ray]'"
    assert not runs.exists()  # checked before anything is written


def test_an_unreachable_ray_address_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    runs = tmp_path / "runs"
    line = one_error_line(mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--executor", "ray", "--address",
                               "127.0.0.1:1", "--name", "g"))
    assert line.startswith("error: cannot reach the Ray cluster at 127.0.0.1:1: ")
    assert not runs.exists()


def test_dry_run_describes_the_ray_placement(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    result = mbpo(tmp_path / "runs", "ablate", "--preset", "inverted_pendulum", "--seeds", "4", "--executor", "ray",
                  "--cpus-per-run", "2", "--gpus-per-run", "0.25", "--dry-run")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "1 variants x 4 seeds (0, 1, 2, 3) = 4 runs" in text  # no variant flag: a seed sweep of the control
    assert ("Ray tasks on a local Ray instance, 2 CPU and 0.25 GPU per run, as many at a time as it has resources "
            "for, 2 threads each") in text


def test_resume_of_unknown_group_and_with_plan_options(tmp_path: Path) -> None:
    assert "no run 'nope'" in one_error_line(mbpo(tmp_path, "ablate", "--resume", "nope"))
    line = one_error_line(mbpo(tmp_path, "ablate", "--resume", "nope", "--no-model"))
    assert "--resume GROUP takes the plan from the group" in line


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--no-model", "--rollout-length", "5",
                  "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "no-model" in result.stdout and "rollout.schedule" in result.stdout and "k=5" in result.stdout
    assert "3 variants x 2 seeds (0, 1) = 6 runs, 120,000 env steps" in " ".join(result.stdout.split())
    result = mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--no-model", "--steps", "1000", "--dry-run",
                  "--json", "--name", "mine")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["group"] == "mine" and data["total_env_steps"] == 2 * 3 * 1000
    assert data["diffs"]["no-model"] == {"algo": ["mbpo", "model_free"]}
    assert "note" not in result.stderr
    assert not runs.exists()


def test_a_group_name_stored_in_another_spelling_is_announced(tmp_path: Path) -> None:
    result = mbpo(tmp_path / "runs", "ablate", "--preset", "inverted_pendulum", "--no-model", "--dry-run", "--json",
                  "--name", "my group")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["group"] == "my-group"
    assert result.stderr.strip() == ("note: group name 'my group' is stored as 'my-group' (names keep letters, "
                                     "digits, '.', '_' and '-')")


def test_the_default_group_name_depends_only_on_the_plan(tmp_path: Path) -> None:
    def group(*more: str) -> str:
        result = mbpo(tmp_path / "runs", "ablate", "--preset", "inverted_pendulum", "--no-model", "--dry-run", "--json",
                      *more)
        assert result.exit_code == 0, result.output
        return str(json.loads(result.stdout)["group"])

    first = group()
    assert first.startswith("inverted_pendulum-ablation-")
    assert group() == first and group("--jobs", "2") == first  # not the time, not the placement
    assert len({first, group("--seeds", "2"), group("--rollout-length", "3"), group("--set", "sac.hidden=64")}) == 4


def test_the_resume_command_repeats_the_executor_options() -> None:
    ray = Placement("ray", 4, "10.0.0.7:6379", 2.0, 0.25)
    assert resume_command(Path("/my runs"), "g", ray) == (
        "mbpo --runs-dir '/my runs' ablate --resume g --executor ray --address 10.0.0.7:6379 --jobs 4 "
        "--cpus-per-run 2 --gpus-per-run 0.25")
    start = "mbpo --runs-dir r ablate --resume g"
    assert resume_command(Path("r"), "g", Placement("ray", None)) == f"{start} --executor ray"
    assert resume_command(Path("r"), "g", Placement("local", 3)) == f"{start} --jobs 3"
    assert resume_command(Path("r"), "g", Placement("local", 1)) == start


# ---------------------------------------------------------------------------------------------
# The executor loop (a fake executor: no processes)
# ---------------------------------------------------------------------------------------------


class FakeExecutor:
    """Runs 'finish' after a few polls unless interrupted; records what it was asked."""

    def __init__(self, stop_after: int | None = None, stop: StopSignals | None = None,
                 lost_after: int | None = None, exit_code: int = 0) -> None:
        self.stop_after, self.stop, self.lost_after = stop_after, stop, lost_after
        self.exit_code = exit_code
        self.submitted: list[list[str]] = []
        self.interrupted: list[int] = []
        self.polls: dict[int, int] = {}

    def submit(self, argv: list[str], log: Path) -> int:
        self.submitted.append(argv)
        if self.stop is not None and len(self.submitted) == self.stop_after:
            self.stop.signum = 2  # as the SIGINT handler would
        return len(self.submitted) - 1

    def poll(self, handle: int) -> int | None:
        if handle in self.interrupted:
            return 130
        if self.lost_after is not None and sum(self.polls.values()) >= self.lost_after:
            raise executors.ExecutorLost("lost the Ray cluster at h:1: its head has not answered for 30 s")
        self.polls[handle] = self.polls.get(handle, 0) + 1
        return self.exit_code if self.polls[handle] > 3 else None

    def interrupt(self, handle: int) -> None:
        self.interrupted.append(handle)


def test_execute_respects_jobs_and_forwards_a_stop(tmp_path: Path) -> None:
    plan = plan_for(variants.VariantFlags(no_model=True))
    registry = Registry.open(tmp_path)
    tasks = [ablation.Task(v.name, s) for v in plan.variants for s in plan.seeds]
    executor = FakeExecutor()
    assert ablation.execute(plan, tasks, registry, tmp_path, executor, jobs=2, threads=1,
                            poll_seconds=0) == ablation.Ending()
    assert [t.state for t in tasks] == ["finished"] * 4
    assert len(executor.submitted) == 4
    argv = executor.submitted[0]
    assert argv[argv.index("--variant") + 1] == "control" and argv[argv.index("--group") + 1] == "g"
    assert "train.threads=1" in argv and argv[-3:] == ["--if-exists", "resume", "--json"]

    # Ctrl-C once two runs are going: both are interrupted, nothing new starts, the signal is returned
    tasks = [ablation.Task(v.name, s) for v in plan.variants for s in plan.seeds]
    stop = StopSignals()
    executor = FakeExecutor(stop_after=2, stop=stop)
    assert ablation.execute(plan, tasks, registry, tmp_path, executor, jobs=2, threads=1, poll_seconds=0,
                            stop=stop) == ablation.Ending(signum=2)
    assert executor.interrupted == [0, 1] and len(executor.submitted) == 2
    assert [t.state for t in tasks] == ["interrupted", "interrupted", "pending", "pending"]


def test_a_lost_executor_ends_the_execution_with_its_running_tasks_lost(tmp_path: Path) -> None:
    plan = plan_for(variants.VariantFlags(no_model=True))
    tasks = [ablation.Task(v.name, s) for v in plan.variants for s in plan.seeds]
    executor = FakeExecutor(lost_after=2)
    ending = ablation.execute(plan, tasks, Registry.open(tmp_path), tmp_path, executor, jobs=2, threads=1,
                              poll_seconds=0)
    assert ending == ablation.Ending(lost="lost the Ray cluster at h:1: its head has not answered for 30 s")
    assert [t.state for t in tasks] == ["lost", "lost", "pending", "pending"]
    assert executor.interrupted == [0, 1] and len(executor.submitted) == 2  # a run still alive is asked to stop


def test_a_run_stopped_by_a_registry_outage_is_interrupted_not_failed(tmp_path: Path) -> None:
    plan = plan_for(variants.VariantFlags(no_model=True))
    tasks = [ablation.Task(v.name, s) for v in plan.variants for s in plan.seeds]
    executor = FakeExecutor(exit_code=OUTAGE_EXIT_CODE)
    ablation.execute(plan, tasks, Registry.open(tmp_path), tmp_path, executor, jobs=2, threads=1, poll_seconds=0)
    assert [t.state for t in tasks] == ["interrupted"] * 4  # checkpointed: `--resume` continues them


def test_a_run_keeps_the_train_threads_its_config_sets(tmp_path: Path) -> None:
    plan = plan_for(variants.VariantFlags(custom=["two:train.threads=2"]))
    tasks = [ablation.Task(v.name, 0) for v in plan.variants]
    executor = FakeExecutor()
    ablation.execute(plan, tasks, Registry.open(tmp_path), tmp_path, executor, jobs=1, threads=5, poll_seconds=0)
    sets = [[a for a in argv if a.startswith("train.threads=")] for argv in executor.submitted]
    assert sets == [["train.threads=5"], []]  # the control leaves them to ablate; the variant sets its own
    assert [t.variant for t in ablation.threads_chosen_for(plan, [ablation.Task(v.name, 0) for v in plan.variants])] \
        == ["control"]


def test_the_head_watch_gives_a_silent_head_up_after_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    watch = executors.HeadWatch(f"127.0.0.1:{server.getsockname()[1]}", "the Ray cluster at h:1", patience=0.5)
    watch.check()
    assert watch.answers()
    server.close()
    deadline = time.monotonic() + 10
    with pytest.raises(executors.ExecutorLost) as lost:
        while time.monotonic() < deadline:
            watch.check()
            time.sleep(0.05)
    assert str(lost.value) == "lost the Ray cluster at h:1: its head has not answered for 0.5 s"
    assert not watch.answers()
    monkeypatch.delenv(executors.RAY_HEAD_TIMEOUT, raising=False)
    assert executors.head_patience() == 30  # half of Ray's own 60 s, after which Ray ends the driver itself
    monkeypatch.setenv(executors.RAY_HEAD_TIMEOUT, "20")
    assert executors.head_patience() == 10


def test_a_users_train_threads_wins_and_the_run_creates_the_dry_runs_group(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    own = ablation.threads_per_job(1) + 1  # never what ablate would choose here
    args = ["ablate", "--preset", "inverted_pendulum", "--seeds", "1", "--steps", "200", *TINY_ARGS,
            "--set", f"train.threads={own}"]
    planned = mbpo(runs, *args, "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert f"{own} threads each (train.threads)" in " ".join(planned.stdout.split())
    group = json.loads(mbpo(runs, *args, "--dry-run", "--json").stdout)["group"]
    result = mbpo(runs, *args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["group"] == group
    [run] = Registry.open(runs).runs_in_group(group)
    assert run.config["train"]["threads"] == own
    assert "thread" not in result.stderr


# ---------------------------------------------------------------------------------------------
# A real small ablation, then --resume
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ablated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    runs = tmp_path_factory.mktemp("ablate") / "runs"
    result = mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--no-model", "--seeds", "2", "--jobs", "2",
                  "--steps", "200", "--name", GROUP, *TINY_ARGS, "--json")
    assert result.exit_code == 0, result.output
    return runs, json.loads(result.stdout), result.stderr


@pytest.mark.xdist_group("ablated")
def test_small_ablation_runs_every_variant_and_seed_in_one_group(ablated: tuple[Path, dict[str, Any], str]) -> None:
    runs, data, stderr = ablated
    assert data["group"] == GROUP and not data["interrupted"]
    assert sorted((r["variant"], r["seed"], r["status"]) for r in data["runs"]) == [
        ("control", 0, "finished"), ("control", 1, "finished"), ("no-model", 0, "finished"),
        ("no-model", 1, "finished")]
    assert data["compare"]["baselines"] == {"InvertedPendulum-v5": f"{GROUP}/control"}
    registry = Registry.open(runs)
    members = registry.runs_in_group(GROUP)
    assert len(members) == 4
    assert {(r.variant, r.algo, r.env_steps) for r in members} == {("control", "mbpo", 200), ("no-model", "sac", 200)}
    assert {r.preset for r in members} == {"inverted_pendulum"}
    threads = ablation.threads_per_job(2)
    assert all(r.config["agent"]["updates_per_step"] == 1 and r.config["train"]["threads"] == threads for r in members)
    assert (f"note: ablate gives each new run {threads} torch thread{'s' if threads > 1 else ''} "
            f"({os.cpu_count()} cores // --jobs 2); --set train.threads=N chooses") in " ".join(stderr.split())
    plan = ablation.load_plan(registry, GROUP)
    assert [v.name for v in plan.variants] == ["control", "no-model"] and plan.seeds == [0, 1]
    result = mbpo(runs, "compare", GROUP, "--baseline", f"{GROUP}-control-s0", "--format", "json")
    assert result.exit_code == 0, result.output
    groups = {g["name"]: g["n_seeds"] for g in json.loads(result.stdout)["groups"]}
    assert groups == {f"{GROUP}/control": 2, f"{GROUP}/no-model": 2}
    # the same group name again is refused (one line, exit 2)
    line = one_error_line(mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--no-model", "--name", GROUP))
    assert "already exists" in line and "--resume" in line


@pytest.mark.xdist_group("ablated")
def test_resume_continues_unfinished_runs_and_skips_finished(ablated: tuple[Path, dict[str, Any], str]) -> None:
    runs, _, _ = ablated
    registry = Registry.open(runs)
    by_key = {(r.variant, r.seed): r for r in registry.runs_in_group(GROUP)}
    # control seed 1: interrupted with 100 env steps left (target raised to 300, as after a Ctrl-C)
    interrupted = by_key[("control", 1)]
    config = dict(interrupted.config)
    config["train"] = {**config["train"], "steps": 300}
    registry.update_config(interrupted.id, config, target_steps=300)
    (runs / interrupted.id / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    registry.set_status(interrupted.id, "interrupted")
    # no-model seed 1: never started
    gone = by_key[("no-model", 1)]
    registry.delete_run(gone.id)
    shutil.rmtree(runs / gone.id)
    finished = {k: registry.get_run(r.id).ended_at for k, r in by_key.items() if k[1] == 0}

    result = mbpo(runs, "ablate", "--resume", GROUP, "--jobs", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    statuses = {(r["variant"], r["seed"]): r["status"] for r in data["runs"]}
    assert statuses[("control", 0)] == statuses[("no-model", 0)] == "finished (earlier)"
    after = {(r.variant, r.seed): r for r in registry.runs_in_group(GROUP)}
    assert len(after) == 4 and all(r.status == "finished" for r in after.values())
    for key, ended in finished.items():
        assert after[key].ended_at == ended  # not rerun
    assert after[("control", 1)].id == interrupted.id and after[("control", 1)].env_steps == 300
    assert after[("no-model", 1)].id != gone.id and after[("no-model", 1)].env_steps == 200
    # nothing left to do: a second resume only reports
    result = mbpo(runs, "ablate", "--resume", GROUP, "--json")
    assert result.exit_code == 0, result.output
    assert all(r["status"] == "finished (earlier)" for r in json.loads(result.stdout)["runs"])


# ---------------------------------------------------------------------------------------------
# The body of a Ray task (no Ray needed: it is a plain function)
# ---------------------------------------------------------------------------------------------


def _task_body_running(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Make the task body start `sh -c script` instead of `mbpo`."""
    monkeypatch.setattr(executors, "mbpo_command", lambda: ["sh", "-c", script, "sh"])


def test_the_task_body_passes_the_exit_code_and_logs_the_attempt(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _task_body_running(monkeypatch, 'echo "$VALUE"; exit 3')
    log = tmp_path / "logs" / "a.log"
    assert executors.run_on_worker([], str(log), {"VALUE": "from the driver"}) == 3
    first, output = log.read_text().splitlines()
    assert "# ray task on" in first and f"worker pid {os.getpid()}" in first
    assert output == "from the driver"


def test_the_stop_file_stops_the_run_with_sigint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _task_body_running(monkeypatch, "trap 'echo stopped; exit 130' INT; "
                                    "i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done")
    log = tmp_path / "a.log"
    threading.Timer(1.0, executors.stop_file(log).touch).start()
    started = time.monotonic()
    assert executors.run_on_worker([], str(log), {}) == 130
    assert time.monotonic() - started < 10 and log.read_text().splitlines()[-1] == "stopped"
    assert executors.run_on_worker([], str(log), {}) == 130  # a stopped task does not start again
    assert log.read_text().count("$ sh") == 1


def test_a_killed_run_process_is_an_error_ray_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _task_body_running(monkeypatch, "kill -9 $$")
    with pytest.raises(executors.LostRunProcess, match="killed by signal 9"):
        executors.run_on_worker([], str(tmp_path / "a.log"), {})


def test_a_packed_ablation_runs_a_variant_s_seeds_in_one_process(tmp_path: Path) -> None:
    """`--pack 2`: a seed sweep of two seeds in one `train --seeds 2` process; the runs are an ablation's runs, named as
    with one process per run."""
    runs = tmp_path / "runs"
    result = mbpo(runs, "ablate", "--preset", "inverted_pendulum", "--seeds", "2", "--pack", "2", "--steps", "200",
                  "--name", "packed", *TINY_ARGS, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["runs"]
    assert sorted((r["variant"], r["seed"], r["status"], r["env_steps"]) for r in rows) == [
        ("control", 0, "finished", 200), ("control", 1, "finished", 200)]
    assert [p.name for p in (runs / "ablations" / "packed" / "logs").iterdir()] == ["control-s0-1.log"]
    with Registry.open(runs) as registry:
        assert sorted(r.name for r in registry.runs_in_group("packed")) == ["packed-control-s0", "packed-control-s1"]


def test_pack_units_join_consecutive_seeds_of_a_variant_up_to_the_pack() -> None:
    tasks = [ablation.Task(v, s) for v in ("control", "wide") for s in (0, 1, 2)]
    tasks[1].state = ablation.TaskState.SKIPPED  # finished earlier: not run again
    units = ablation.pack_units(tasks, 2, Path("unused"), None)  # type: ignore[arg-type]  # no resumed task
    assert [[(t.variant, t.seed) for t in u] for u in units] == [
        [("control", 0)], [("control", 2)], [("wide", 0), ("wide", 1)], [("wide", 2)]]
    assert [len(u) for u in ablation.pack_units(tasks, 1, Path("unused"), None)] == [1] * 5  # type: ignore[arg-type]
