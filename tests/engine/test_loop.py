"""The training loop on tiny runs: determinism, the SAC-only path, what each ablation switch changes, the update
mode."""

import pytest
import torch

from mbpo_cli.config.load import build_config
from mbpo_cli.engine.events import EpochEvent, NoticeEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.state import RunState, build_run

TINY = {
    "env": {"id": "InvertedPendulum-v5"},
    "model": {"hidden": 32, "layers": 2, "weight_decay": [2.5e-5, 5e-5, 1e-4], "max_epochs": 3},
    "rollout": {"batch_size": 200, "schedule": [1, 15, 1, 1], "train_freq": 50},
    "agent": {"updates_per_step": 2, "batch_size": 32},
    "sac": {"hidden": 32},
    "train": {"steps": 300, "epoch_length": 100, "init_steps": 100, "eval_episodes": 1, "seed": 3, "threads": 1},
}


def _run(config: dict) -> tuple[RunState, list[dict[str, float]]]:
    """The run after training, and the metrics of each epoch (times left out)."""
    state = build_run(build_config(config))
    seen: list[dict[str, float]] = []
    train(state, lambda e: seen.append({k: v for k, v in e.metrics.items() if not k.startswith("time_")})
          if isinstance(e, EpochEvent) else None)
    return state, seen


def _metrics(config: dict) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    state, seen = _run(config)
    return seen, state.agent.state_dict()


def test_same_seed_same_numbers() -> None:
    first, weights1 = _metrics(TINY)
    second, weights2 = _metrics(TINY)
    assert first == second
    assert all(torch.equal(weights1[k], weights2[k]) for k in weights1)
    other, _ = _metrics({**TINY, "train": {**TINY["train"], "seed": 4}})
    assert other != first


MODEL_KEYS = ("model_holdout_loss", "rollout_k", "model_buffer_size")


def test_sac_only_has_no_model_and_reports_every_epoch() -> None:
    state, seen = _run({**TINY, "algo": "model_free"})
    assert len(seen) == 3
    assert state.model is None and state.lone.model_buffer is None  # nothing to roll
    assert state.lone.initial_states is None
    assert all(key not in epoch for epoch in seen for key in MODEL_KEYS)
    assert "critic_loss" in seen[-1]
    assert state.phases == ("env", "agent", "eval")  # no time in a model, rollout or diagnostics phase


# ---------------------------------------------------------------------------------------------
# Ablation switches: each reaches the engine and changes what the rollouts hold. With the schedule's k = 1, every
# model transition starts from a start state, and the newest `rollout.batch_size` of them (the last rollout, after
# the last retrain at step 150) come from the model as it is now.
# ---------------------------------------------------------------------------------------------

SHORT = {**TINY, "train": {**TINY["train"], "steps": 200}}


def _changed(section: str, **values: object) -> dict:
    return {**SHORT, section: {**SHORT[section], **values}}


def _all_rows_in(rows: torch.Tensor, table: torch.Tensor) -> bool:
    known = {tuple(row) for row in table.tolist()}
    return all(tuple(row) in known for row in rows.tolist())


def _any_row_in(rows: torch.Tensor, table: torch.Tensor) -> bool:
    known = {tuple(row) for row in table.tolist()}
    return any(tuple(row) in known for row in rows.tolist())


def _nearest_member(state: RunState) -> tuple[torch.Tensor, torch.Tensor]:
    """For each transition of the newest rollout: the member whose mean prediction is nearest its next observation,
    and how far that is (largest absolute difference)."""
    assert state.model is not None and state.lone.model_buffer is not None
    n = state.config.rollout.batch_size
    last = state.lone.model_buffer.ordered()
    obs, act, next_obs = last.obs[-n:], last.act[-n:], last.next_obs[-n:]
    mean, _ = state.model.predict_members(obs[None], act[None], torch.arange(state.config.model.ensemble_size)[None])
    mean = mean[0]  # E x N x out
    distance = (obs + mean[..., 1:] - next_obs).abs().amax(dim=-1)  # E x N
    nearest = distance.min(dim=0)
    return nearest.indices, nearest.values


@pytest.fixture(scope="session")
def default_run() -> RunState:
    return _run(SHORT)[0]


@pytest.fixture(scope="session")
def deterministic_run() -> RunState:
    return _run(_changed("model", deterministic=True))[0]


def test_rollouts_branch_from_initial_states_when_asked(default_run: RunState) -> None:
    state, seen = _run(_changed("rollout", from_initial_states=True))
    assert state.config.rollout.from_initial_states and state.lone.initial_states is not None
    assert state.lone.model_buffer is not None and seen[-1]["model_buffer_size"] == len(state.lone.model_buffer) > 0
    starts = state.lone.model_buffer.ordered().obs
    assert _all_rows_in(starts, state.lone.initial_states)
    assert not _any_row_in(starts, state.lone.real_buffer.ordered().obs)
    # the default branches from states of the real buffer
    assert default_run.lone.initial_states is None and default_run.lone.model_buffer is not None
    assert _all_rows_in(default_run.lone.model_buffer.ordered().obs, default_run.lone.real_buffer.ordered().obs)


def test_a_deterministic_model_rolls_out_its_members_means(default_run: RunState,
                                                             deterministic_run: RunState) -> None:
    assert deterministic_run.config.model.deterministic
    _, distance = _nearest_member(deterministic_run)
    assert float(distance.max()) < 1e-5
    # the default samples each next observation from a member's Gaussian: away from every mean
    _, sampled = _nearest_member(default_run)
    assert float(sampled.median()) > 1e-3


def test_rollouts_use_the_elites_or_every_member(deterministic_run: RunState) -> None:
    elites = deterministic_run.model.elites[0] if deterministic_run.model is not None else None
    assert elites is not None and 0 < len(elites) < deterministic_run.config.model.ensemble_size
    used, _ = _nearest_member(deterministic_run)
    assert set(used.tolist()) == set(elites.tolist())
    every = _run(_changed("model", deterministic=True, use_elites=False))[0]
    assert not every.config.model.use_elites
    used, distance = _nearest_member(every)
    assert float(distance.max()) < 1e-5
    assert set(used.tolist()) == set(range(every.config.model.ensemble_size))


def test_update_mode_is_decided_once_after_exploration() -> None:
    """On CPU the run decides (eagerly) how its updates run when exploration ends, and says nothing about it."""
    config = {**TINY, "train": {**TINY["train"], "steps": 150}}
    state = build_run(build_config(config))
    events: list[object] = []
    train(state, events.append, should_stop=lambda: state.env_step >= 100)
    assert not state.updates_prepared and state.update_mode == ""  # still exploring: nothing captured yet
    train(state, events.append)
    assert state.update_mode == ("SAC updates: eager (CUDA graphs need a CUDA device); "
                                 "model training: eager (CUDA graphs need a CUDA device)")
    assert not any(isinstance(e, NoticeEvent) for e in events)
    off = build_run(build_config({**config, "train": {**config["train"], "cuda_graphs": False}}))
    train(off)
    assert off.update_mode == "SAC updates and model training: eager (train.cuda_graphs is off)"
