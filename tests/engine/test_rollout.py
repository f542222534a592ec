"""The rollout-length schedule and the model buffer's size."""

from mbpo_cli.engine.rollout import model_buffer_capacity, rollout_length


def test_rollout_length_schedule() -> None:
    hopper = (20, 150, 1, 15)
    assert [rollout_length(e, hopper) for e in (0, 19, 20)] == [1, 1, 1]
    # floor(1 + (e - 20) / 130 * 14)
    assert rollout_length(30, hopper) == 2
    assert rollout_length(85, hopper) == 8
    assert rollout_length(149, hopper) == 14
    assert rollout_length(150, hopper) == 15
    assert rollout_length(500, hopper) == 15
    assert rollout_length(60, (20, 100, 1, 25)) == 13
    assert rollout_length(7, (1, 15, 1, 1)) == 1


def test_model_buffer_capacity() -> None:
    assert model_buffer_capacity(15, 100_000, 1000, 250, 1) == 6_000_000
    assert model_buffer_capacity(25, 100_000, 1000, 1000, 5) == 12_500_000


def test_the_schedule_counts_epochs_after_exploration_as_the_official_code() -> None:
    """Hopper (init_steps 5,000, epochs of 1,000, schedule [20, 150, 1, 15]): k at 20k, 50k and 125k real steps."""
    from mbpo_cli.config.load import resolve_config
    from mbpo_cli.engine.state import build_run

    state = build_run(resolve_config(preset="hopper", overrides=["train.device=cpu", "train.threads=1"]))
    schedule = state.config.rollout.schedule
    ks = {}
    for step in (5_000, 20_000, 50_000, 125_000):
        state.env_step = step
        ks[step] = (state.training_epoch, rollout_length(state.training_epoch, schedule))
    assert ks == {5_000: (0, 1), 20_000: (15, 1), 50_000: (45, 3), 125_000: (120, 11)}
    state.env_step = 4_000
    assert state.training_epoch == 0 and state.epoch == 4
