"""The one real-episode loop: seeded resets, returns, lengths, the observations acted on, a cut after some steps."""

import gymnasium as gym
import numpy as np
import torch

from mbpo_cli.agents.dqn import DQN
from mbpo_cli.config.schema import DQNConfig
from mbpo_cli.engine.envs import env_spec
from mbpo_cli.engine.episodes import agent_policy, evaluate, play_episode, run_episode


def _by_hand(env: gym.Env, seed: int) -> tuple[float, list[np.ndarray]]:
    """CartPole pushed left then right in turn from a reset seeded `seed`: its return and observations."""
    obs, _ = env.reset(seed=seed)
    total, seen, done = 0.0, [], False
    while not done:
        seen.append(np.asarray(obs, np.float32))
        obs, reward, terminated, truncated, _ = env.step(len(seen) % 2)
        total += float(reward)
        done = terminated or truncated
    return total, seen


def test_an_episode_is_played_from_a_seeded_reset_to_its_end() -> None:
    env = gym.make("CartPole-v1")
    total, seen = _by_hand(env, 7)
    steps: list[int] = []

    def alternate(obs: np.ndarray) -> int:
        steps.append(1)
        return len(steps) % 2

    episode = run_episode(env, alternate, 7, keep_observations=True)
    assert (episode.total_return, episode.length) == (total, len(seen))
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(episode.observations, seen, strict=True))
    frames: list[int] = []
    steps.clear()
    replayed = play_episode(env, alternate, env.reset(seed=7)[0], after_step=lambda: frames.append(1))
    assert (replayed.total_return, replayed.length, len(frames), replayed.observations) == (total, len(seen),
                                                                                          len(seen), [])
    steps.clear()
    cut = run_episode(env, alternate, 7, max_steps=3, keep_observations=True)
    assert cut.length == 3 and all(np.array_equal(a, b) for a, b in zip(cut.observations, seen[:3], strict=True))


def test_evaluate_plays_the_agents_greedy_policy_with_resets_seed_onwards() -> None:
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    spec = env_spec(env)
    agent = DQN(spec.obs_dim, spec.act_dim, DQNConfig(hidden=8))
    returns, lengths = evaluate(agent, env, spec, 3, 11, torch.device("cpu"))
    policy = agent_policy(agent, spec, torch.device("cpu"))
    expected = [run_episode(env, policy, 11 + i) for i in range(3)]
    assert returns == [e.total_return for e in expected] and lengths == [e.length for e in expected]
    assert all(isinstance(policy(np.zeros(4, np.float32)), int) for _ in range(2))
