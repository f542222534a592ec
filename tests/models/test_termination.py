"""The known termination functions: hand-built observations, and agreement with gymnasium's own."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_cli.config.load import ConfigError, build_config
from mbpo_cli.config.schema import KNOWN_TERMINATIONS
from mbpo_cli.models.termination import Termination, TerminationKind, termination_of
from mbpo_cli.models.termination import known as termination
from mbpo_cli.models.termination.custom import CustomTermination


def _obs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_termination_hand_built() -> None:
    hop = _obs([[1.25, 0.0] + [0.0] * 9, [0.6, 0.0] + [0.0] * 9, [1.2, 0.25] + [0.0] * 9,
                [1.2, 0.0, 150.0] + [0.0] * 8, [float("nan"), 0.0] + [0.0] * 9])
    assert termination.hopper(hop).tolist() == [False, True, True, True, True]
    walker = _obs([[1.2, 0.1] + [0.0] * 15, [0.7, 0.0] + [0.0] * 15, [2.1, 0.0] + [0.0] * 15,
                   [1.2, 1.2] + [0.0] * 15])
    assert termination.walker2d(walker).tolist() == [False, True, True, True]
    ant = _obs([[0.55] + [0.0] * 26, [0.1] + [0.0] * 26, [1.1] + [0.0] * 26, [0.5, float("inf")] + [0.0] * 25])
    assert termination.ant(ant).tolist() == [False, True, True, True]
    humanoid = _obs([[1.4] + [0.0] * 44, [0.9] + [0.0] * 44, [2.1] + [0.0] * 44])
    assert termination.humanoid(humanoid).tolist() == [False, True, True]
    pend = _obs([[0.0, 0.1, 0.0, 0.0], [0.0, 0.3, 0.0, 0.0], [0.0, -0.21, 0.0, 0.0]])
    assert termination.inverted_pendulum(pend).tolist() == [False, True, True]
    upright = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    fallen = [0.0, np.sin(0.8), 0.0, np.cos(0.8), 1.0, 0.0, 0.0, 0.0, 0.0]
    assert termination.inverted_double_pendulum(_obs([upright, fallen])).tolist() == [False, True]
    assert termination.never(hop).tolist() == [False] * 5


@pytest.mark.parametrize(
    ("env_id", "kwargs", "name"),
    [
        ("Hopper-v5", {}, "hopper"),
        ("Walker2d-v5", {}, "walker2d"),
        ("Ant-v5", {"include_cfrc_ext_in_observation": False}, "ant"),
        ("Humanoid-v5", {"include_cinert_in_observation": False, "include_cvel_in_observation": False,
                         "include_qfrc_actuator_in_observation": False, "include_cfrc_ext_in_observation": False},
         "humanoid"),
        ("InvertedPendulum-v5", {}, "inverted_pendulum"),
        ("InvertedDoublePendulum-v5", {}, "inverted_double_pendulum"),
        ("HalfCheetah-v5", {}, "halfcheetah"),
    ],
)
def test_termination_matches_environment(env_id: str, kwargs: dict, name: str) -> None:
    """On random-action trajectories the function agrees with gymnasium's own `terminated`."""
    env = gym.make(env_id, **kwargs)
    assert termination.termination_name("known", env_id) == name == termination.termination_name("auto", env_id)
    fn = termination.TERMINATION_FNS[name]
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    ours, theirs = [], []
    for _ in range(600):
        obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        ours.append(bool(fn(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]))
        theirs.append(terminated)
        if terminated or truncated:
            env.reset()
    env.close()
    assert ours == theirs
    if name not in ("halfcheetah",):
        assert any(theirs), "the trajectory should include terminations"


def test_names_of_settings() -> None:
    assert termination.known_task("Hopper-v4") == "hopper" and termination.known_task("CartPole-v1") is None
    assert termination.termination_name("known", "CartPole-v1") is None
    assert termination.termination_name("auto", "CartPole-v1") == "never"
    assert termination.termination_name("walker2d", "CartPole-v1") == "walker2d"
    assert termination.termination_name("bogus", "Hopper-v5") is None


def test_every_known_task_has_a_function() -> None:
    assert set(termination.TERMINATION_FNS) == {*KNOWN_TERMINATIONS, "never"}


def test_each_setting_resolves_to_its_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`termination_of` gives each `env.termination` setting its kind and function, in one place for all four."""
    (tmp_path / "user_termination.py").write_text("def done(next_obs):\n    return next_obs[:, 0] > 1.0\n")
    monkeypatch.chdir(tmp_path)

    def of(env_id: str, setting: str) -> Termination:
        return termination_of(build_config({"env": {"id": env_id, "termination": setting}}))

    hopper = of("Hopper-v5", "known")
    assert (hopper.kind, hopper.fn, hopper.description) == (TerminationKind.KNOWN, termination.hopper, "known (hopper)")
    assert (of("CartPole-v1", "auto").kind, of("CartPole-v1", "auto").fn) == (TerminationKind.NEVER, termination.never)
    learned = of("CartPole-v1", "learned")
    assert (learned.kind, learned.fn) == (TerminationKind.LEARNED, None)
    custom = of("CartPole-v1", "user_termination:done")
    assert custom.kind == TerminationKind.CUSTOM and isinstance(custom.fn, CustomTermination)
    assert custom.fn(torch.tensor([[2.0, 0.0], [0.0, 0.0]])).tolist() == [True, False]
    with pytest.raises(ConfigError, match="CartPole-v1 has no known termination function"):
        of("CartPole-v1", "known")
