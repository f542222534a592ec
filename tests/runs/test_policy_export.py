"""Tests for `mbpo export` (mbpo_cli.runs.policy_export): TorchScript, ONNX and INT8 files of tiny real runs, run
in a fresh process without mbpo and compared with the in-tool policy; latency; bad input.

Two tiny runs (300 env steps each, one thread): SAC on InvertedPendulum (one action in [-3, 3]) and DQN on CartPole
(two actions). ONNX needs the onnx extra (`.ci/run` installs it); without onnxruntime those tests are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelpers import TINY, mbpo, one_error_line, train_runs

from mbpo_cli.agents.base import GraphedAgent, lone_act
from mbpo_cli.agents.factory import make_agent
from mbpo_cli.bench.latency import Latency, bench_latency
from mbpo_cli.cli.export import show_latencies
from mbpo_cli.config.load import build_config
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env, to_env_action
from mbpo_cli.runs import policy_export
from mbpo_cli.runs.evaluation import run_episodes
from mbpo_cli.runs.export_verification import tool_act
from mbpo_cli.runs.outputs import check_file as check_output
from mbpo_cli.runs.policy import Policy, load_policy
from mbpo_cli.runs.registry import Registry

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed (pip install 'mbpo-cli[onnx]')")
FORMATS = ["torchscript", pytest.param("onnx", marks=needs_ort)]

TINY_DQN_SETS = ["train.init_steps=100", "train.epoch_length=100", "train.eval_episodes=1", "train.threads=1",
                 "agent.updates_per_step=1", "agent.batch_size=32", "dqn.hidden=32", "rollout.batch_size=200",
                 "model.max_epochs=5", "model.hidden=32", "done_model.max_epochs=5"]
TINY_DQN = ["--preset", "cartpole", "--steps", "300", "--device", "cpu",
            *(arg for item in TINY_DQN_SETS for arg in ("--set", item))]
"""`mbpo train` arguments for a tiny CartPole DQN run."""


class Trained(types.SimpleNamespace):
    runs_dir: Path
    sac: str
    dqn: str


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    runs_dir = tmp_path_factory.mktemp("export") / "runs"
    yield Trained(runs_dir=runs_dir, **train_runs(runs_dir, {"sac": TINY, "dqn": TINY_DQN}))


def tool_policy(trained: Trained, run_id: str) -> tuple[Policy, EnvSpec]:
    with Registry.open(trained.runs_dir, read_only=True) as registry:
        policy = load_policy(registry, registry.get_run(run_id), trained.runs_dir)
    env = make_env(policy.config.env)
    spec = env_spec(env)
    env.close()
    return policy, spec


def observations(policy: Policy, spec: EnvSpec, count: int = 300) -> np.ndarray:
    """Observations `count x obs`: the in-tool policy's seeded episodes, then random ones (wider than it meets)."""
    env = make_env(policy.config.env)
    seen: list[np.ndarray] = []
    seed = 100
    while len(seen) < count // 2:
        obs, _ = env.reset(seed=seed)
        seed, done = seed + 1, False
        while not done and len(seen) < count // 2:
            seen.append(np.asarray(obs, dtype=np.float32))
            action = lone_act(policy.agent, torch.from_numpy(seen[-1]).unsqueeze(0), deterministic=True)[0].numpy()
            obs, _, terminated, truncated, _ = env.step(to_env_action(action, spec))
            done = terminated or truncated
    env.close()
    noise = np.random.default_rng(0).normal(0.0, 2.0, size=(count - len(seen), spec.obs_dim)).astype(np.float32)
    return np.concatenate([np.stack(seen), noise])


def tool_actions(policy: Policy, spec: EnvSpec, obs: np.ndarray) -> np.ndarray:
    """What `mbpo eval` would do with each observation, one at a time: the agent's action, then `to_env_action`."""
    return np.stack([np.asarray(to_env_action(lone_act(policy.agent, torch.from_numpy(o)[None], True)[0].numpy(), spec))
                     for o in obs])


def export_json(trained: Trained, run_id: str, out: Path, *args: str) -> dict:
    result = mbpo(trained.runs_dir, "export", run_id, "--out", str(out), "--json", *args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no deprecation warning or exporter log reaches the user
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


FRESH = """
import sys
import numpy as np
path, fmt, inputs, outputs = sys.argv[1:]
obs = np.load(inputs)
if fmt == "torchscript":
    import torch
    program = torch.jit.load(path)
    actions = program(torch.from_numpy(obs)).numpy()
    single = program(torch.from_numpy(obs[:1])).numpy()
else:
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    actions = session.run(None, {"obs": obs})[0]
    single = session.run(None, {"obs": obs[:1]})[0]
assert "mbpo_cli" not in sys.modules, "the exported file needed mbpo_cli"
np.savez(outputs, actions=actions, single=single)
"""
"""Runs an exported file with only torch or onnxruntime (and numpy) imported: the whole batch, and its first
observation alone."""


def run_fresh(path: Path, fmt: str, obs: np.ndarray, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The file's actions for `obs`, and for `obs[:1]`, in a fresh process that does not import mbpo_cli."""
    inputs, outputs = tmp_path / "obs.npy", tmp_path / "actions.npz"
    np.save(inputs, obs)
    done = subprocess.run([sys.executable, "-c", FRESH, str(path), fmt, str(inputs), str(outputs)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    with np.load(outputs) as saved:
        return saved["actions"], saved["single"]


# ----- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_continuous_export_acts_as_the_run_in_a_fresh_process(trained: Trained, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"policy.{'pt' if fmt == 'torchscript' else 'onnx'}"
    data = export_json(trained, trained.sac, out, "--format", fmt)
    check = data["verification"]
    assert (check["observations"], check["differing"], check["tolerance"]) == (512, 0, 1e-5)
    assert check["max_deviation"] <= 1e-5
    assert (data["output"]["shape"], data["output"]["dtype"]) == (["B", 1], "float32")
    assert data["returns"] is None and data["bench"] is None
    assert out.is_file() and data["bytes"] == out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left beside it

    policy, spec = tool_policy(trained, trained.sac)
    obs = observations(policy, spec)
    actions, single = run_fresh(out, fmt, obs, tmp_path)
    expected = tool_actions(policy, spec, obs)
    assert actions.dtype == np.float32 and actions.shape == (len(obs), 1) and single.shape == (1, 1)
    np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(single, expected[:1], rtol=0, atol=1e-5)
    assert np.all(np.abs(actions) <= 3.0) and np.abs(actions).max() > 1.0  # rescaled into [-3, 3], not [-1, 1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_dqn_export_gives_the_greedy_index(trained: Trained, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "cartpole.policy"
    data = export_json(trained, trained.dqn, out, "--format", fmt)
    assert data["verification"]["differing"] == 0 and data["verification"]["max_deviation"] == 0.0
    assert (data["output"]["shape"], data["output"]["dtype"]) == (["B"], "int64")

    policy, spec = tool_policy(trained, trained.dqn)
    obs = observations(policy, spec)
    actions, single = run_fresh(out, fmt, obs, tmp_path)
    expected = tool_actions(policy, spec, obs)
    assert actions.dtype == np.int64 and actions.shape == (len(obs),)
    np.testing.assert_array_equal(actions, expected)
    np.testing.assert_array_equal(single, expected[:1])
    assert set(np.unique(actions)) == {0, 1}  # both actions occur: the comparison is not trivially constant


@pytest.mark.parametrize("fmt", FORMATS)
def test_int8_export_reports_deviation_and_returns(trained: Trained, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "policy-int8"
    data = export_json(trained, trained.sac, out, "--format", fmt, "--quantize", "int8", "--seed", "3")
    check = data["verification"]
    assert data["quantize"] == "int8" and check["tolerance"] is None and check["observations"] == 512
    assert 0.0 < check["max_deviation"] < 0.3  # quantized (not the float weights), and close to the float policy
    returns = data["returns"]
    assert returns["seed"] == 3 and len(returns["int8"]) == len(returns["float"]) == 10
    policy, spec = tool_policy(trained, trained.sac)
    assert returns["float"] == run_episodes(policy, 10, 3).returns  # what `mbpo eval --seed 3` reports
    if fmt == "torchscript":
        with policy_export.quiet():
            program = torch.jit.load(str(out))
        assert "quantized" in str(program.inlined_graph)
    else:
        import onnx

        assert "MatMulInteger" in {node.op_type for node in onnx.load(str(out)).graph.node}
    obs = observations(policy, spec)
    actions, single = run_fresh(out, fmt, obs, tmp_path)  # INT8 scales activations per batch: not held equal
    expected = tool_actions(policy, spec, obs)
    np.testing.assert_allclose(actions, expected, rtol=0, atol=0.3)
    np.testing.assert_allclose(single, expected[:1], rtol=0, atol=0.3)


def test_table_output(trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "policy.pt"
    result = mbpo(trained.runs_dir, "export", "tiny-sac", "--format", "torchscript", "--out", str(out))
    assert result.exit_code == 0, result.output
    for text in ("exported run", "to " + str(out), "TorchScript", "input obs: B x 4 float32",
                 "output action: B x 1 float32", "verified on 512 observations", "tolerance 1e-05"):
        assert text in result.stdout, text
    show_latencies([Latency("PyTorch eager", 41.0, 90.5, ""), Latency("ONNX Runtime", None, None, "skipped: why")],
                   threads=3)
    table = capsys.readouterr().out
    for text in ("3 threads", "p50 (µs)", "p99 (µs)", "41.0", "90.5", "skipped: why"):
        assert text in table, text


def test_latency_json(trained: Trained, tmp_path: Path) -> None:
    data = export_json(trained, trained.dqn, tmp_path / "policy.pt", "--format", "torchscript", "--bench")
    bench = data["bench"]
    assert bench["threads"] == 1 and bench["timed_calls"] >= 1000 and bench["warmup_calls"] >= 100
    rows = {row["runtime"]: row for row in bench["results"]}
    assert list(rows) == ["PyTorch eager", "TorchScript", "TorchScript INT8", "ONNX Runtime", "ONNX Runtime INT8"]
    assert rows["TorchScript"]["note"] == "the exported file"
    timed = [row for row in rows.values() if row["p50_us"] is not None]
    assert len(timed) == (5 if HAS_ORT else 3)
    assert all(0 < row["p50_us"] <= row["p99_us"] < 1e5 for row in timed)


def test_latency_threads_and_skipped_runtimes(trained: Trained, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the onnx extra the ONNX Runtime rows say why they are skipped; --threads sets torch's threads."""
    policy, _ = tool_policy(trained, trained.sac)
    out = check_output("--out", tmp_path / "policy.pt", trained.runs_dir, overwrite=False)
    exported = policy_export.export_policy(policy, "torchscript", None, out)
    monkeypatch.setattr(policy_export, "ONNX_PACKAGES", ("no_such_onnx_package",))  # missing with or without onnx
    rows = {row.runtime: row for row in bench_latency(policy, exported, threads=2, warmup=2, calls=20)}
    assert torch.get_num_threads() == 2
    for name in ("ONNX Runtime", "ONNX Runtime INT8"):
        assert rows[name].p50_us is None
        assert rows[name].note == "skipped: no_such_onnx_package not installed (pip install 'mbpo-cli[onnx]')"
    assert all(rows[name].p50_us is not None for name in ("PyTorch eager", "TorchScript", "TorchScript INT8"))


# ----- the program of each agent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sac", "td3", "ddpg", "dqn"])
def test_every_agent_exports_its_task_action(name: str) -> None:
    """Untrained agents with asymmetric bounds: the program (eager and scripted, any batch size) gives exactly what
    `mbpo eval` steps the task with."""
    torch.manual_seed(0)
    discrete = name == "dqn"
    agent = make_agent(build_config({"agent": {"name": name}, name: {"hidden": 16}}), 5, 3 if discrete else 2)
    low, high = (np.zeros(3, np.float32), np.ones(3, np.float32)) if discrete else \
        (np.array([-2.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32))
    spec = EnvSpec(obs_dim=5, act_dim=low.size, act_low=low, act_high=high, max_episode_steps=None,
                   discrete=discrete)
    program = policy_export.policy_program(agent, spec)
    with policy_export.quiet():
        scripted = torch.jit.script(program)
    obs = np.random.default_rng(1).normal(0.0, 3.0, size=(64, 5)).astype(np.float32)
    expected = tool_act(agent, spec)(obs)
    for run in (program, scripted):
        for batch in (obs, obs[:1]):
            got = run(torch.from_numpy(batch)).numpy()
            np.testing.assert_allclose(got, expected[:len(batch)], rtol=0, atol=1e-6)
            assert got.dtype == (np.int64 if discrete else np.float32)
    if not discrete:
        assert np.all(expected >= low) and np.all(expected <= high)


# ----- failures ---------------------------------------------------------------------------------------------------


def test_a_file_that_does_not_act_as_the_run_is_not_written(trained: Trained, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = policy_export.policy_program

    def off_by_a_little(agent: GraphedAgent, spec: EnvSpec) -> torch.nn.Module:
        program = real(agent, spec)
        with torch.no_grad():
            program.low += 1e-3
        return program

    monkeypatch.setattr(policy_export, "policy_program", off_by_a_little)
    out = tmp_path / "policy.pt"
    line = one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--format", "torchscript", "--out",
                               str(out)), code=1)
    assert "verification failed" in line and "0.001" in line and "tolerance 1e-05" in line and "not written" in line
    assert list(tmp_path.iterdir()) == []
    # an earlier file stays whole: the new one was written under a temporary name, removed on failure
    out.write_bytes(b"the policy exported yesterday")
    one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--format", "torchscript", "--out", str(out),
                        "--overwrite"), code=1)
    assert out.read_bytes() == b"the policy exported yesterday"
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format: expected torchscript or onnx, got 'tflite'"),
        (["--format", "torchscript", "--quantize", "int4"], "--quantize: expected int8, got 'int4'"),
        (["--format", "torchscript", "--threads", "0"], "--threads: must be at least 1"),
        (["--format", "torchscript", "--checkpoint", "100"], "no checkpoint at env step 100"),
    ],
)
def test_bad_input_is_one_line_exit_2(trained: Trained, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "policy.pt"
    assert message in one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--out", str(out), *args))
    assert not out.exists()


def test_bad_output_paths(trained: Trained, tmp_path: Path) -> None:
    def export_to(out: Path) -> str:
        return one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--format", "torchscript", "--out",
                                   str(out)))

    missing = tmp_path / "missing" / "policy.pt"
    assert export_to(missing) == f"error: --out {missing}: the folder {missing.parent} does not exist"
    assert "is a folder" in export_to(tmp_path)
    # root may "write" /proc by its permission bits: creating a file there, before the export, says otherwise
    assert export_to(Path("/proc/policy.pt")).startswith("error: --out /proc/policy.pt: cannot write in the folder "
                                                         "/proc: ")
    assert list(tmp_path.iterdir()) == []


def checkpoint_files(trained: Trained) -> dict[Path, bytes]:
    """The registry and every file of the SAC run's folder -> its bytes."""
    files = [trained.runs_dir / "registry.db", *(trained.runs_dir / trained.sac).rglob("*")]
    return {path: path.read_bytes() for path in files if path.is_file()}


def test_the_registry_and_the_run_s_checkpoints_are_never_written(trained: Trained, tmp_path: Path) -> None:
    """Issue 27: `--out RUNS/registry.db` overwrote the registry and `--out` at a checkpoint replaced it; a link to
    them did the same. Each is refused before any work, --overwrite or not, and nothing changes."""
    before = checkpoint_files(trained)
    checkpoint = max((trained.runs_dir / trained.sac / "checkpoints").glob("step-*.pt"))
    link = tmp_path / "policy.pt"
    link.symlink_to(checkpoint)
    for out, says in ((trained.runs_dir / "registry.db", "that is the registry database"),
                      (checkpoint, f"that is inside the folder of run {trained.sac}"),
                      (link, f"(a link to {checkpoint.resolve()}): that is inside the folder of run {trained.sac}")):
        for overwrite in ([], ["--overwrite"]):
            line = one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--format", "torchscript", "--out",
                                       str(out), *overwrite))
            assert line.startswith(f"error: --out {out}") and says in line
            assert line.endswith("which mbpo keeps; write somewhere else")
    assert checkpoint_files(trained) == before


def test_an_existing_file_is_replaced_only_with_overwrite(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "policy.pt"
    out.write_bytes(b"old")
    line = one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--format", "torchscript", "--out", str(out)))
    assert line == f"error: --out {out}: the file exists; add --overwrite to replace it"
    assert out.read_bytes() == b"old"
    data = export_json(trained, trained.sac, out, "--format", "torchscript", "--overwrite")
    assert data["file"] == str(out) and out.stat().st_size == data["bytes"] > 1000
    assert list(tmp_path.iterdir()) == [out]


def test_unknown_run_and_a_run_without_checkpoints(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "policy.pt"
    assert "no run 'nope'" in one_error_line(mbpo(trained.runs_dir, "export", "nope", "--format", "torchscript",
                                                  "--out", str(out)))
    with Registry.open(tmp_path / "runs") as registry:
        run = registry.create_run(name="empty", preset=None, env_id="InvertedPendulum-v5", algo="mbpo", seed=0,
                                  config={}, device="cpu", command="test", target_steps=100)
    line = one_error_line(mbpo(tmp_path / "runs", "export", run.id, "--format", "torchscript", "--out", str(out)))
    assert f"run {run.id} has no checkpoints to export" in line
    assert not out.exists()


def test_onnx_without_its_extra_names_the_extra(trained: Trained, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_export, "ONNX_PACKAGES", ("onnx", "no_such_onnx_package"))
    out = tmp_path / "policy.onnx"
    line = one_error_line(mbpo(trained.runs_dir, "export", trained.sac, "--format", "onnx", "--out", str(out)))
    assert "no_such_onnx_package not installed" in line and "pip install 'mbpo-cli[onnx]'" in line
    assert not out.exists()
