"""Packs of seeds: a seed in a pack trains as it would alone, a pack is deterministic and resumes exactly from its
seeds' lone checkpoints, a seed whose numbers go non-finite leaves the pack and the others finish."""

from __future__ import annotations

import pytest
import torch

from mbpo_cli.config.errors import ConfigError
from mbpo_cli.config.load import resolve_config
from mbpo_cli.config.schema import Config
from mbpo_cli.engine.errors import NumericalError
from mbpo_cli.engine.events import EpochEvent, Event, SeedFailedEvent
from mbpo_cli.engine.loop import train
from mbpo_cli.engine.pack import build_pack, lone_view, pack_states, seed_config
from mbpo_cli.engine.state import RunState, build_run

TINY = ["train.device=cpu", "train.threads=1", "rollout.batch_size=400", "train.epoch_length=200",
        "train.init_steps=200", "rollout.train_freq=100", "agent.updates_per_step=2", "sac.hidden=32",
        "td3.hidden=32", "model.hidden=32", "agent.batch_size=32", "model.max_epochs=5", "train.eval_episodes=1"]
STEPS = 400


def tiny(*sets: str, algo: str = "mbpo", seed: int = 0) -> Config:
    return resolve_config(preset="inverted_pendulum", algo=algo, steps=STEPS, seed=seed, overrides=[*TINY, *sets])


def curves(state: RunState, stop_at: int | None = None) -> dict[int, list[float]]:
    """Train `state` (to `stop_at`, else to the end); each seed's evaluation returns by its index."""
    seen: dict[int, list[float]] = {}

    def record(event: Event) -> None:
        if isinstance(event, EpochEvent):
            seen.setdefault(event.member, []).append(event.metrics["eval_return"])

    train(state, record, None if stop_at is None else (lambda: state.env_step >= stop_at))
    return seen


def weights(state: RunState) -> dict[str, torch.Tensor]:
    """The agent's and the model's tensors of a lone run (or view)."""
    tensors = {f"agent.{k}": v for k, v in state.agent.state_dict().items() if isinstance(v, torch.Tensor)}
    if state.model is not None:
        tensors |= {f"model.{k}": v for k, v in state.model.state_dict().items()}
    return tensors


@pytest.mark.parametrize(("sets", "exact"), [((), True), (("env.termination=learned",), True),
                                              (("agent.name=td3",), False)], ids=["sac", "learned", "td3"])
def test_a_seed_in_a_pack_of_three_trains_as_alone(sets: tuple[str, ...], exact: bool) -> None:
    """MBPO with SAC (and the learned termination): its agent and its data bit for bit, its model to float32 rounding
    (an elementwise kernel rounds a tail of a seed's rows differently inside a pack), one thread on the CPU. TD3: its
    actor's first update already differs in the last bits (a kernel that sums differently over S members than over
    one), so to float32 rounding."""
    pack = build_pack(tiny(*sets), [0, 1, 2])
    packed = curves(pack)
    lone = build_run(tiny(*sets, seed=1))
    alone = curves(lone)
    assert packed[1] == alone[0] and len(packed) == 3
    assert packed[0] != packed[1]  # the seeds are seeds: they differ
    view = lone_view(pack, 1)
    for key, value in weights(view).items():
        if exact and key.startswith("agent."):
            assert torch.equal(value, weights(lone)[key]), key
        else:
            torch.testing.assert_close(value.float(), weights(lone)[key].float(), rtol=1e-4, atol=1e-5, msg=key)
    if exact:
        assert torch.equal(view.lone.real_buffer.ordered().obs, lone.lone.real_buffer.ordered().obs)
        assert view.lone.model_buffer is not None and lone.lone.model_buffer is not None
        assert torch.equal(view.lone.model_buffer.ordered().obs, lone.lone.model_buffer.ordered().obs)


def test_the_same_pack_gives_the_same_numbers() -> None:
    first, second = build_pack(tiny(), [0, 1]), build_pack(tiny(), [0, 1])
    assert curves(first, 300) == curves(second, 300)
    for member in (0, 1):
        for key, value in weights(lone_view(first, member)).items():
            assert torch.equal(value, weights(lone_view(second, member))[key]), key


def test_a_pack_restored_from_its_seeds_checkpoints_continues_exactly() -> None:
    reference = build_pack(tiny(), [0, 1])
    expected = curves(reference)
    first = build_pack(tiny(), [0, 1])
    before = curves(first, 300)
    saved = [lone_view(first, member).checkpoint_state() for member in (0, 1)]
    lones = [build_run(seed_config(tiny(), seed)) for seed in (0, 1)]
    for lone, payload in zip(lones, saved, strict=True):
        assert lone.load_checkpoint_state(payload)
        lone.lone.index = lones.index(lone)
    resumed = pack_states(lones)
    after = curves(resumed)
    assert {m: before[m] + after[m] for m in (0, 1)} == expected
    for member in (0, 1):
        for key, value in weights(lone_view(reference, member)).items():
            assert torch.equal(value, weights(lone_view(resumed, member))[key]), key


def test_a_seed_gone_non_finite_leaves_the_pack_and_the_others_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    pack = build_pack(tiny(algo="sac"), [0, 1, 2])
    events: list[Event] = []
    train(pack, events.append, should_stop=lambda: pack.env_step >= 300)
    with torch.no_grad():  # seed 1's actor goes non-finite: its next action is NaN
        for weight in pack.agent.actor.net.weights:  # type: ignore[attr-defined]
            weight[1].fill_(float("nan"))
    train(pack, events.append)
    failed = [e for e in events if isinstance(e, SeedFailedEvent)]
    assert [(e.member, e.env_step) for e in failed] == [(1, 300)]
    assert "non-finite action from the policy at env step 300" in failed[0].message
    assert pack.env_step == STEPS and [seed.index for seed in pack.members] == [0, 2]
    finals = {e.member for e in events if isinstance(e, EpochEvent) and e.env_step == STEPS}
    assert finals == {0, 2}


def test_a_lone_run_gone_non_finite_fails_as_before() -> None:
    state = build_run(tiny(algo="sac"))
    train(state, None, should_stop=lambda: state.env_step >= 300)
    with torch.no_grad():
        for weight in state.agent.actor.net.weights:  # type: ignore[attr-defined]
            weight.fill_(float("nan"))
    with pytest.raises(NumericalError, match="non-finite action from the policy at env step 300"):
        train(state)


def test_what_trains_one_seed_per_process_refuses_a_pack() -> None:
    with pytest.raises(ConfigError, match="DHMBPO trains one seed per process"):
        build_pack(tiny("train.init_steps=250", "train.epoch_length=250", algo="dhmbpo"), [0, 1])
    with pytest.raises(ConfigError, match=r"train\.pipeline"):
        build_pack(tiny("train.pipeline=true"), [0, 1])
