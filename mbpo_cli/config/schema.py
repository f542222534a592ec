"""The run configuration's schema: frozen dataclasses, one section each, every field documented beside its rules.

A config file is YAML with these sections (every key optional, defaults as documented). The sections live in
`mbpo_cli.config.sections` (task, model, agents, dhmbpo, train) and are importable from here; each field declares
the rules its value follows (`mbpo_cli.config.rules`), which `mbpo_cli.config.validation` checks with the rules
that join several fields. Reading, overrides and resolution are in the other modules of `mbpo_cli.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from mbpo_cli.config.rules import only_for
from mbpo_cli.config.sections.agents import AGENTS, AgentConfig, DDPGConfig, DQNConfig, SACConfig, TD3Config
from mbpo_cli.config.sections.dhmbpo import DHMBPOConfig, DynamicsConfig
from mbpo_cli.config.sections.model import DiagnosticsConfig, DoneModelConfig, ModelConfig, RolloutConfig
from mbpo_cli.config.sections.task import KNOWN_TERMINATIONS, TERMINATION_MODES, EnvConfig, WrapperConfig
from mbpo_cli.config.sections.train import TrainConfig

__all__ = ["AGENTS", "KNOWN_TERMINATIONS", "TERMINATION_MODES", "AgentConfig", "Config", "DDPGConfig", "DHMBPOConfig",
           "DQNConfig", "DiagnosticsConfig", "DoneModelConfig", "DynamicsConfig", "EnvConfig", "ModelConfig",
           "RolloutConfig", "SACConfig", "TD3Config", "TrainConfig", "WrapperConfig"]


@dataclass(frozen=True)
class Config:
    """A complete, validated run configuration."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The task."""
    algo: Literal["mbpo", "model_free", "dhmbpo"] = "mbpo"
    """mbpo, model_free (the base agent on real data only, the same code path without a model), or dhmbpo (Double
    Horizon MBPO: its own model, actor and critics, see `dhmbpo`)."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """The base agent and its update ratio."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The dynamics model."""
    done_model: DoneModelConfig = field(default_factory=DoneModelConfig)
    """The learned termination classifier (env.termination: learned)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Model rollouts."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC's hyperparameters (agent.name: sac)."""
    td3: TD3Config = field(default_factory=TD3Config)
    """TD3's hyperparameters (agent.name: td3)."""
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)
    """DDPG's hyperparameters (agent.name: ddpg)."""
    dqn: DQNConfig = field(default_factory=DQNConfig)
    """DQN's hyperparameters (agent.name: dqn)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run."""
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    """Model diagnostics (MBPO runs)."""
    dhmbpo: DHMBPOConfig = field(default_factory=DHMBPOConfig, metadata=only_for("dhmbpo"))
    """Double Horizon MBPO's settings (algo: dhmbpo)."""

    @property
    def uses_model(self) -> bool:
        """True for the model-based algorithms (mbpo, dhmbpo), False for the base agent alone."""
        return self.algo in ("mbpo", "dhmbpo")

    @property
    def label(self) -> str:
        """How runs are named and grouped: mbpo (with SAC, the paper's), mbpo-<agent>, dhmbpo, or the agent alone."""
        if self.algo == "model_free":
            return self.agent.name
        if self.algo == "dhmbpo":
            return "dhmbpo"
        return "mbpo" if self.agent.name == "sac" else f"mbpo-{self.agent.name}"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON data (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
