"""Tests for mbpo_cli.stats on tiny hand-computed curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mbpo_cli.reports import stats


def test_iqm_keeps_middle_half() -> None:
    assert stats.iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # mean of [3, 4, 5, 6]


def test_iqm_along_axis_and_empty() -> None:
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 40.0]])  # (R=4, G=2)
    np.testing.assert_allclose(stats.iqm(x, axis=0), [2.5, 25.0])
    assert math.isnan(stats.iqm(np.array([])))


def test_interpolate_between_points_and_nan_outside() -> None:
    out = stats.interpolate_curve(np.array([0, 10]), np.array([0.0, 100.0]), np.array([5, 10, 15]))
    assert out[0] == pytest.approx(50.0)
    assert out[1] == pytest.approx(100.0)
    assert math.isnan(out[2])
    before = stats.interpolate_curve(np.array([5, 10]), np.array([1.0, 2.0]), np.array([0]))
    assert math.isnan(before[0])


def test_interpolate_rejects_unsorted_steps() -> None:
    with pytest.raises(ValueError, match="sorted"):
        stats.interpolate_curve(np.array([10, 0]), np.array([1.0, 2.0]), np.array([5]))


def test_curves_on_grid_shape_and_nan_for_short_run() -> None:
    runs = [(np.array([0, 10]), np.array([0.0, 10.0])), (np.array([0, 5]), np.array([0.0, 50.0]))]
    out = stats.curves_on_grid(runs, np.array([0, 5, 10]))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0], [0.0, 5.0, 10.0])
    np.testing.assert_allclose(out[1, :2], [0.0, 50.0])
    assert math.isnan(out[1, 2])


def test_steps_to_threshold() -> None:
    steps, returns = np.array([0, 10, 20]), np.array([0.0, 50.0, 100.0])
    assert stats.steps_to_threshold(steps, returns, 75.0) == pytest.approx(15.0)
    assert stats.steps_to_threshold(steps, returns, 50.0) == pytest.approx(10.0)
    assert stats.steps_to_threshold(steps, returns, 101.0) is None
    assert stats.steps_to_threshold(np.array([5, 10]), np.array([80.0, 90.0]), 75.0) == 5.0


def test_steps_to_threshold_ignores_a_peak_the_curve_falls_back_from() -> None:
    steps, returns = np.array([0, 10, 20, 30]), np.array([0.0, 100.0, 0.0, 100.0])
    assert stats.steps_to_threshold(steps, returns, 50.0) == pytest.approx(25.0)  # held from the second crossing
    assert stats.steps_to_threshold(steps[:3], returns[:3], 50.0) is None  # reached once, ends below
    assert stats.steps_to_threshold(steps, np.array([0.0, 100.0, 60.0, 100.0]), 50.0) == pytest.approx(5.0)


def test_normalized_auc_straight_line() -> None:
    steps, returns = np.array([0, 10]), np.array([0.0, 100.0])
    assert stats.normalized_auc(steps, returns, 0, 10, 0.0, 100.0) == pytest.approx(0.5)
    # Interpolated sub-interval [5, 10]: mean return 75.
    assert stats.normalized_auc(steps, returns, 5, 10, 0.0, 100.0) == pytest.approx(0.75)
    # End past the last step is cut at the last step.
    assert stats.normalized_auc(steps, returns, 0, 50, 0.0, 100.0) == pytest.approx(0.5)
    # low == high: unnormalized mean return.
    assert stats.normalized_auc(steps, returns, 0, 10, 3.0, 3.0) == pytest.approx(50.0)


def test_normalized_auc_uses_interior_points() -> None:
    steps, returns = np.array([0, 5, 10]), np.array([0.0, 100.0, 0.0])
    assert stats.normalized_auc(steps, returns, 0, 10, 0.0, 100.0) == pytest.approx(0.5)
    assert stats.normalized_auc(steps, returns, 0, 10, 0.0, 50.0) == pytest.approx(1.0)


def test_probability_of_improvement() -> None:
    x, y = np.array([2.0, 3.0]), np.array([1.0, 2.0])
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.875)  # (1 + 1 + 0.5 + 1) / 4
    assert stats.probability_of_improvement(y, x) == pytest.approx(0.125)
    assert stats.probability_of_improvement(np.array([1.0]), np.array([1.0])) == pytest.approx(0.5)


def test_bootstrap_ci_deterministic_and_contains_iqm() -> None:
    sample = np.random.default_rng(123).normal(100.0, 10.0, size=20)
    first = stats.bootstrap_ci(sample, seed=7)
    assert first == stats.bootstrap_ci(sample, seed=7)
    low, high = first
    assert low < stats.iqm(sample) < high
    assert first != stats.bootstrap_ci(sample, seed=8)


def test_bootstrap_ci_single_run_is_nan() -> None:
    low, high = stats.bootstrap_ci(np.array([5.0]))
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_ci_stratified() -> None:
    tasks = [np.array([0.0, 1.0, 2.0, 3.0]), np.array([100.0, 101.0, 102.0, 103.0])]
    low, high = stats.bootstrap_ci(tasks, statistic=np.mean, n_resamples=500)
    # Each resample keeps 4 runs per task, so the pooled mean stays between the two tasks' means.
    assert 1.5 < low <= 51.5 <= high < 101.5
    assert stats.bootstrap_ci(np.stack(tasks), statistic=np.mean, n_resamples=500) == (low, high)


def test_milestones() -> None:
    assert stats.milestones(1000) == [250, 500, 750, 1000]
    assert stats.milestones(1000, [100, 500, 5000]) == [100, 250, 500, 750, 1000]
    assert stats.milestones(10) == [3, 5, 8, 10]  # 2.5 and 7.5 round half up


def test_summarize_group() -> None:
    runs = [
        (np.array([0, 10]), np.array([0.0, 10.0])),
        (np.array([0, 10]), np.array([0.0, 20.0])),
        (np.array([0, 5]), np.array([0.0, 30.0])),
    ]
    summary = stats.summarize_group("a", runs, [5, 10], n_resamples=200)
    assert summary.name == "a"
    assert summary.steps == (5, 10)
    assert summary.n_seeds == (3, 2)
    assert summary.mean == pytest.approx((15.0, 15.0))
    assert summary.iqm[1] == pytest.approx(15.0)
    assert summary.ci_low[0] <= summary.iqm[0] <= summary.ci_high[0]
    single = stats.summarize_group("b", runs[:1], [10])
    assert single.n_seeds == (1,)
    assert math.isnan(single.ci_low[0]) and math.isnan(single.ci_high[0])
