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
