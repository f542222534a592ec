"""`mbpo train --algo dhmbpo` end to end: a tiny DHMBPO run is trained, recorded as dhmbpo, evaluated and exported
(its policy standardizes observations by its normalizer, in the exported file too); bad DHMBPO input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelpers import mbpo, one_error_line
from dhmbpo_tiny import TINY_DHMBPO

from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.agents.factory import make_agent
from mbpo_cli.agents.networks import tanh_policy
from mbpo_cli.config.resolve import resolve_config
from mbpo_cli.engine.envs import EnvSpec
from mbpo_cli.runs import policy_export
from mbpo_cli.runs.export_verification import tool_act
from mbpo_cli.runs.registry import Registry

SETS = [arg for item in TINY_DHMBPO for arg in ("--set", item)]


def test_train_eval_and_export_a_dhmbpo_run(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    result = mbpo(runs_dir, "train", "--preset", "inverted_pendulum", "--algo", "dhmbpo", "--steps", "300",
                  "--device", "cpu", "--json", *SETS)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["algo"], summary["status"], summary["env_steps"]) == ("dhmbpo", "finished", 300)
    with Registry.open(runs_dir) as registry:
        run = registry.get_run(summary["id"])
        keys = {key for _, key, _ in registry.metrics(run.id)}
    assert run.config["algo"] == "dhmbpo" and run.config["dhmbpo"]["iteration_steps"] == 100
    assert {"actor_loss", "critic_loss", "alpha", "model_validation_nll", "dr_buffer_states"} <= keys

    assert "the diagnostics are MBPO's" in one_error_line(mbpo(runs_dir, "diagnose", run.id))
    for which in ("latest", "best"):
        evaluated = mbpo(runs_dir, "eval", run.id, "--checkpoint", which, "--episodes", "2", "--json")
        assert evaluated.exit_code == 0, evaluated.output
        assert len(json.loads(evaluated.stdout)["returns"]) == 2
    out = tmp_path / "policy.pt"
    exported = mbpo(runs_dir, "export", run.id, "--format", "torchscript", "--out", str(out), "--json")
    assert exported.exit_code == 0, exported.output  # the file was verified against the run's policy
    with policy_export.quiet():
        program = torch.jit.load(str(out))
    assert program(torch.zeros(3, 4)).shape == (3, 1)


def test_the_exported_program_standardizes_observations_as_the_actor_does() -> None:
    """An untrained actor with a non-trivial normalizer and asymmetric bounds: the program (eager and scripted, any
    batch size) gives exactly what `mbpo eval` steps the task with."""
    torch.manual_seed(0)
    config = resolve_config(preset="inverted_pendulum", algo="dhmbpo", overrides=TINY_DHMBPO)
    agent = make_agent(config, 5, 2)
    assert isinstance(agent, DHMBPOAgent)
    agent.actor.obs_mean.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0]))
    agent.actor.obs_std.copy_(torch.tensor([0.5, 2.0, 1.0, 4.0, 0.1]))
    low, high = np.array([-2.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32)
    spec = EnvSpec(obs_dim=5, act_dim=2, act_low=low, act_high=high, max_episode_steps=None, discrete=False)
    program = policy_export.policy_program(agent, spec)
    with policy_export.quiet():
        scripted = torch.jit.script(program)
    obs = np.random.default_rng(1).normal(0.0, 3.0, size=(64, 5)).astype(np.float32)
    expected = tool_act(agent, spec)(obs)
    for run in (program, scripted):
        got = run(torch.from_numpy(obs)).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    unnormalized = policy_export.BoundedAction(tanh_policy(agent.actor.net, outputs=2), low, high)
    assert not np.allclose(unnormalized(torch.from_numpy(obs)).detach().numpy(), expected, atol=1e-3)


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "CartPole-v1", "--set", "env.termination=never"], "algo: dhmbpo needs a continuous (Box) action space"),
    (["--preset", "inverted_pendulum", "--set", "dhmbpo.batch_size=250"],
     "dhmbpo.batch_size: must be a multiple of dhmbpo.model.members (8)"),
    (["--preset", "hopper", "--set", "train.init_steps=2500"],
     "train.init_steps: DHMBPO explores for whole iterations: a positive multiple of dhmbpo.iteration_steps (1000)"),
    (["--preset", "inverted_pendulum", "--set", "env.termination=learned"], "env.termination: learned is not"),
    (["--preset", "inverted_pendulum", "--set", "dhmbpo.model.dropout=[0.1,0.1]"],
     "dhmbpo.model.dropout: needs layers = 3 values"),
])
def test_bad_dhmbpo_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    line = one_error_line(mbpo(tmp_path / "runs", "train", "--algo", "dhmbpo", "--steps", "300", *args))
    assert message in line, line
