"""Building the configured base agent, and which action space each agent supports."""

from __future__ import annotations

from mbpo_cli.agents.base import ActionSpace, GraphedAgent
from mbpo_cli.agents.ddpg import DDPG
from mbpo_cli.agents.dhmbpo import DHMBPOAgent
from mbpo_cli.agents.dqn import DQN
from mbpo_cli.agents.sac import SAC
from mbpo_cli.agents.td3 import TD3
from mbpo_cli.config.schema import Config

AGENT_TYPES: dict[str, type[GraphedAgent]] = {"sac": SAC, "td3": TD3, "ddpg": DDPG, "dqn": DQN}

BuiltAgent = GraphedAgent | DHMBPOAgent
"""What `make_agent` builds: a base agent, or DHMBPO's actor-critic (algo: dhmbpo)."""


def action_space_of(name: str) -> ActionSpace:
    """The kind of action space agent `name` supports."""
    return AGENT_TYPES[name].action_space


def agents_for(space: ActionSpace) -> list[str]:
    """The agents that support `space`."""
    return [name for name, cls in AGENT_TYPES.items() if cls.action_space == space]


def make_agent(config: Config, obs_dim: int, act_dim: int, seeds: int = 1) -> BuiltAgent:
    """The agent `config.agent.name` (DHMBPO's own with algo: dhmbpo) for observations of `obs_dim` and `act_dim`
    actions (choices), holding a pack of `seeds` seeds initialized from the global RNG, on the CPU (for a pack whose
    seeds each start as alone, build them lone under their seeds and `pack_agents` them). DHMBPO's agent holds one
    seed only."""
    if config.algo == "dhmbpo":
        return DHMBPOAgent(obs_dim, act_dim, config.dhmbpo, seeds=seeds)
    name, gamma = config.agent.name, config.agent.gamma
    if name == "sac":
        return SAC(obs_dim, act_dim, config.sac, gamma, seeds=seeds)
    if name == "td3":
        return TD3(obs_dim, act_dim, config.td3, gamma, seeds=seeds)
    if name == "ddpg":
        return DDPG(obs_dim, act_dim, config.ddpg, gamma, seeds=seeds)
    return DQN(obs_dim, act_dim, config.dqn, gamma, seeds=seeds)
