"""A run's policy from one of its checkpoints: which checkpoint `latest`, `best` or an env step names, and the agent
it restores on the CPU, acting as it did at that step (what `mbpo eval`, its video and `mbpo export` act with)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbpo_cli.agents.factory import BuiltAgent, make_agent
from mbpo_cli.config.load import ConfigError, build_config
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.envs import EnvSpec, env_spec, make_env
from mbpo_cli.runs.checkpoint import CheckpointError, load_file
from mbpo_cli.runs.errors import RunError
from mbpo_cli.runs.layout import checkpoint_file
from mbpo_cli.runs.python_envs import check_rebuildable
from mbpo_cli.runs.registry import CheckpointInfo, CheckpointLabel, Registry, RunInfo


class EvalError(RunError):
    """Bad input to `mbpo eval` or an impossible request (one line; the CLI exits 2)."""


@dataclass(frozen=True)
class Policy:
    """A run's policy, ready to act, and where it came from."""

    agent: BuiltAgent
    config: Config
    checkpoint: CheckpointInfo
    file: Path
    """The checkpoint's file."""
    spec: EnvSpec
    """The task's dimensions and action bounds."""

    @property
    def label(self) -> CheckpointLabel:
        """How an evaluation names its checkpoint in the registry (``best:300``)."""
        return self.checkpoint.label


def _steps_available(checkpoints: list[CheckpointInfo]) -> str:
    full = sorted({c.step for c in checkpoints if c.kind != "best"})
    best = [c.step for c in checkpoints if c.kind == "best"]
    parts = [f"{s:,}" for s in full] + [f"best (step {s:,})" for s in best]
    return ", ".join(parts) or "none"


def select_checkpoint(checkpoints: list[CheckpointInfo], run: RunInfo, which: str) -> CheckpointInfo:
    """The checkpoint that ``which`` names: ``latest``, ``best`` or an env step.

    ``latest`` is the newest full checkpoint (the best-policy file when the run has no full one);
    a step picks the full checkpoint saved at that env step (or the best policy if that is the only
    file of that step). EvalError when the run has no checkpoint or none matches.
    """
    if not checkpoints:
        raise EvalError(f"run {run.id} has no checkpoints to evaluate")
    full = [c for c in checkpoints if c.kind != "best"]
    best = [c for c in checkpoints if c.kind == "best"]
    if which == "latest":
        return (full or best)[-1]
    if which == "best":
        if not best:
            raise EvalError(f"run {run.id} has no best-policy checkpoint (available: {_steps_available(checkpoints)})")
        return best[-1]
    try:
        step = int(which.replace("_", "").replace(",", ""))
    except ValueError:
        raise EvalError(f"--checkpoint: expected latest, best or an env step, got {which!r}") from None
    matches = [c for c in full if c.step == step] or [c for c in best if c.step == step]
    if not matches:
        raise EvalError(f"run {run.id} has no checkpoint at env step {step:,} "
                        f"(available: {_steps_available(checkpoints)})")
    return matches[-1]


def policy_agent(config: Config, spec: EnvSpec, payload: dict[str, Any], path: str, step: int) -> BuiltAgent:
    """The run's agent on the CPU, acting as it did at env step `step` of the run.

    A full checkpoint restores the whole agent (key ``agent``); a best-policy file restores its acting network
    (key ``policy``, or ``actor`` in files written before other agents existed).
    """
    agent = make_agent(config, spec.obs_dim, spec.act_dim)
    agent_weights, policy_weights = payload.get("agent"), payload.get("policy", payload.get("actor"))
    try:
        if isinstance(agent_weights, dict):
            agent.load_state_dict(agent_weights)
        elif isinstance(policy_weights, dict):
            agent.policy.load_state_dict(policy_weights)
        else:
            raise CheckpointError(f"checkpoint {path} holds no policy weights")
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the run's policy: {str(err).splitlines()[0]}") from None
    agent.on_env_step(step)
    return agent.eval()


def load_policy(registry: Registry, run: RunInfo, runs_dir: Path, which: str = "latest") -> Policy:
    """Verify (sha256 from the registry) and load the chosen checkpoint's policy on the CPU."""
    info = select_checkpoint(registry.checkpoints(run.id), run, which)
    file = checkpoint_file(runs_dir, info.path)
    payload = load_file(file, info.sha256)
    try:
        config = build_config(payload.get("config") or run.config, info.path)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {info.path} has an unusable config: {err}") from None
    check_rebuildable(config.env.id, run.id)
    env = make_env(config.env)
    spec = env_spec(env)
    env.close()
    agent = policy_agent(config, spec, payload, info.path, info.step)
    return Policy(agent=agent, config=config, checkpoint=info, file=file, spec=spec)
