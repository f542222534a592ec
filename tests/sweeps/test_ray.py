"""`mbpo ablate --executor ray` on a real local Ray cluster (`ray start --head` on 127.0.0.1), every run recorded in
a real PostgreSQL registry: a small ablation runs to completion, a run whose Ray worker is killed mid-run is
retried, resumes from its last checkpoint and ends with the returns of its uninterrupted twin, and Ctrl-C stops
every task (each run checkpoints) for `--resume` to finish."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from clihelpers import TINY_SETS

from mbpo_cli.runs.registry import Registry
from mbpo_cli.sweeps import executors
from mbpo_cli.sweeps.executors import mbpo_command

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

GROUP = "rayab"
STEPS = 1500
"""Long enough (13 epochs after 200 exploration steps) for the kill to land between two checkpoints."""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[servers.RayCluster]:
    servers.skip_unless_available(servers.ray_missing_reason())
    cluster = servers.start_ray(cpus=2)
    yield cluster
    cluster.stop()


def _ablate(runs: Path, url: str, cluster: servers.RayCluster, *args: str) -> subprocess.Popen[str]:
    sets = [arg for item in TINY_SETS if not item.startswith("train.threads") for arg in ("--set", item)]
    argv = [*mbpo_command(), "--runs-dir", str(runs), "ablate", "--preset", "inverted_pendulum", "--steps",
            str(STEPS), "--device", "cpu", *sets, *args, "--executor", "ray", "--address", cluster.address]
    env = {**os.environ, **cluster.env, "MBPO_REGISTRY_URL": url}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _worker_pids(log: Path) -> list[int]:
    """The Ray worker of each attempt, as each attempt's first log line names it."""
    return [int(pid) for pid in re.findall(r"ray task on \S+, worker pid (\d+)", log.read_text())]


def _kill_worker_after_a_checkpoint(registry: Registry, runs: Path, name: str, driver: subprocess.Popen[str]) -> int:
    """SIGKILL the Ray worker running run `name` once the run has a periodic checkpoint at step 500 or later; the
    step it had reached."""
    log = runs / "ablations" / GROUP / "logs" / "k-1-s0.log"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        found = [r for r in registry.list_runs(group=GROUP) if r.name == name]
        if found and log.is_file() and any(c.kind == "periodic" and c.step >= 500
                                           for c in registry.checkpoints(found[0].id)):
            step = registry.get_run(found[0].id).env_steps
            assert step < STEPS, "the run finished before the kill: make it longer"
            os.kill(_worker_pids(log)[0], signal.SIGKILL)
            return step
        time.sleep(0.05)
    raise AssertionError(f"run {name} never reached a checkpoint: {driver.communicate()}")


def test_an_ablation_on_ray_into_postgresql_survives_a_killed_worker(
        ray_cluster: servers.RayCluster, postgres_url: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    driver = _ablate(runs, postgres_url, ray_cluster, "--rollout-length", "1", "--seeds", "2", "--name", GROUP,
                     "--cpus-per-run", "1", "--json")
    with Registry(postgres_url) as registry:
        killed_at = _kill_worker_after_a_checkpoint(registry, runs, f"{GROUP}-k-1-s0", driver)
        out, err = driver.communicate(timeout=300)
        assert driver.returncode == 0, err

        report = json.loads(out)
        assert sorted((r["variant"], r["seed"], r["status"]) for r in report["runs"]) == [
            ("control", 0, "finished"), ("control", 1, "finished"), ("k=1", 0, "finished"), ("k=1", 1, "finished")]
        assert report["compare"] is not None
        assert not (runs / "registry.db").exists()  # everything went to PostgreSQL

        log = runs / "ablations" / GROUP / "logs" / "k-1-s0.log"
        assert len(set(_worker_pids(log))) == 2, log.read_text()  # retried on a new worker ...
        resumed = re.search(r"resuming run \w+ from env step (\d+)", log.read_text())
        assert resumed is not None and 500 <= int(resumed.group(1)) <= killed_at  # ... from its last checkpoint

        by_name = {r.name: r for r in registry.list_runs(group=GROUP)}
        twin, killed = by_name[f"{GROUP}-control-s0"], by_name[f"{GROUP}-k-1-s0"]
        assert killed.env_steps == twin.env_steps == STEPS
        twin_evals = registry.metrics(twin.id, "eval_return")
        assert [step for step, _, _ in twin_evals] == list(range(100, STEPS + 1, 100))
        assert registry.metrics(killed.id, "eval_return") == twin_evals  # the kill changed no number


def test_ctrl_c_stops_the_ray_tasks_and_resume_finishes_them(
        ray_cluster: servers.RayCluster, postgres_url: str, tmp_path: Path) -> None:
    runs, group = tmp_path / "runs", "raystop"
    driver = _ablate(runs, postgres_url, ray_cluster, "--rollout-length", "1", "--seeds", "1", "--name", group,
                     "--json")
    with Registry(postgres_url) as registry:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            started = registry.list_runs(group=group)
            if len(started) == 2 and all(any(c.kind == "periodic" for c in registry.checkpoints(r.id))
                                         for r in started):
                break
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 130, err
        assert err.splitlines()[-1] == (f"interrupted: continue with: mbpo --runs-dir {runs} ablate --resume {group} "
                                        f"--executor ray --address {ray_cluster.address}")
        stopped = registry.list_runs(group=group)
        assert [r.status for r in stopped] == ["interrupted", "interrupted"]
        assert all(0 < r.env_steps < STEPS for r in stopped)
        assert json.loads(out)["interrupted"] is True

        sets = [*mbpo_command(), "--runs-dir", str(runs), "ablate", "--resume", group, "--executor", "ray",
                "--address", ray_cluster.address, "--json"]
        resumed = subprocess.run(sets, capture_output=True, text=True, timeout=300,
                                 env={**os.environ, **ray_cluster.env, "MBPO_REGISTRY_URL": postgres_url})
        assert resumed.returncode == 0, resumed.stderr
        finished = registry.list_runs(group=group)
        assert {r.id for r in finished} == {r.id for r in stopped}  # the same runs, continued
        assert [(r.status, r.env_steps) for r in finished] == [("finished", STEPS)] * 2
        evals = [registry.metrics(r.id, "eval_return") for r in finished]
        assert evals[0] == evals[1]  # k=1 is the control: stopped at different steps, the same numbers


def _wait_for_checkpoints(runs: Path, group: str, count: int, driver: subprocess.Popen[str],
                          seen: dict[int, servers.Proc]) -> None:
    """Wait until `count` runs of `group` have a periodic checkpoint, collecting the driver's descendants in `seen`."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        seen.update(servers.descendants({driver.pid}))
        if (runs / "registry.db").is_file():
            with Registry.open(runs) as registry:
                started = registry.list_runs(group=group)
                if len(started) == count and all(any(c.kind == "periodic" for c in registry.checkpoints(r.id))
                                                  for r in started):
                    return
        time.sleep(0.2)
    raise AssertionError(f"the runs never reached a checkpoint: {driver.communicate()}")


@pytest.mark.parametrize("where", ["address", "local"])
def test_a_killed_head_is_reported_with_the_runs_and_leaves_no_process_behind(where: str, tmp_path: Path) -> None:
    """--address: the head's daemons are killed (their raylet's agents stay behind, the cluster's own); a local
    instance started by the driver: its GCS is killed. Either way the driver gives the cluster up before Ray would
    end it, says so in one line with the resume command, prints the runs as JSON and leaves none of its processes."""
    servers.skip_unless_available(servers.ray_missing_reason())
    runs, group, ray_dir = tmp_path / "runs", "rayhead", Path(tempfile.mkdtemp(prefix="mbpo-ray-"))
    cluster = servers.start_ray(cpus=2) if where == "address" else None
    placement = ["--address", cluster.address] if cluster is not None else []
    sets = [arg for item in TINY_SETS if not item.startswith("train.threads") for arg in ("--set", item)]
    argv = [*mbpo_command(), "--runs-dir", str(runs), "ablate", "--preset", "inverted_pendulum", "--steps", "5000",
            "--device", "cpu", *sets, "--rollout-length", "1", "--seeds", "1", "--name", group, "--json",
            "--executor", "ray", *placement]
    env = {key: value for key, value in os.environ.items() if key != "MBPO_REGISTRY_URL"}  # SQLite in `runs`
    env |= {**servers.RAY_ENV, "RAY_TMPDIR": str(ray_dir), executors.RAY_HEAD_TIMEOUT: "20"}  # gives up after 10 s
    seen: dict[int, servers.Proc] = {}
    cluster_processes: dict[int, servers.Proc] = {}
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_checkpoints(runs, group, 2, driver, seen)
        if cluster is not None:
            cluster_processes = cluster.processes()
            servers.kill_processes(cluster.daemons())
        else:
            servers.kill_processes({pid: p for pid, p in seen.items() if "gcs_server" in p.command})
        out, err = driver.communicate(timeout=180)

        assert driver.returncode == 69, err
        lost = (f"lost the Ray cluster at {cluster.address}" if cluster is not None
                else "lost the local Ray instance of this command")
        again = "once the cluster answers again, " if cluster is not None else ""
        assert err.splitlines()[-1] == (
            f"error: {lost}: its head has not answered for 10 s; 2 runs were running and 0 not started (--resume "
            f"continues each from its last checkpoint); {again}continue with: mbpo --runs-dir {runs} ablate --resume "
            f"{group} --executor ray{''.join(' ' + a for a in placement)}")
        assert [line for line in err.splitlines() if line.startswith("error")] == err.splitlines()[-1:]
        report = json.loads(out)
        assert report["executor_lost"] == f"{lost}: its head has not answered for 10 s"
        assert [(r["variant"], r["status"]) for r in report["runs"]] == [("control", "lost"), ("k=1", "lost")]
        assert all(r["id"] is not None for r in report["runs"])

        if cluster is None:  # the driver started Ray itself: GCS, raylet, its agents, workers, the runs
            assert any("raylet" in p.command for p in seen.values()), seen
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (servers.surviving(seen) or _run_processes(runs)):
            time.sleep(0.5)
        assert servers.surviving(seen) == {} and _run_processes(runs) == {}
    finally:
        if driver.poll() is None:
            driver.kill()
        servers.kill_processes(seen)
        if cluster is not None:
            cluster.stop(cluster_processes)
        shutil.rmtree(ray_dir, ignore_errors=True)


def _run_processes(runs: Path) -> dict[int, str]:
    """The live `mbpo` processes working in `runs` (the driver and the runs it started), pid -> command line."""
    return {pid: p.command for pid, p in servers.live_processes().items() if f"--runs-dir {runs} " in p.command}
