"""Aggregate statistics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from rlvlmf.errors import ConfigError
from rlvlmf.evaluation.stats import (
    bootstrap_curve,
    iqm,
    mean,
    median,
    optimality_gap,
    stratified_bootstrap_ci,
)


def test_iqm_drops_a_quarter_each_side() -> None:
    # Sorted: 1 2 | 3 4 5 6 | 10 100 -> mean of the middle four is 4.5; the outliers don't count.
    assert iqm([10, 1, 2, 3, 100, 4, 5, 6]) == pytest.approx(4.5)
    # n = 10 -> floor(2.5) = 2 dropped each side: mean(3..8) = 5.5.
    assert iqm(np.arange(1, 11)) == pytest.approx(5.5)
    # n < 4 drops nothing.
    assert iqm([1.0, 2.0, 6.0]) == pytest.approx(3.0)


def test_iqm_matches_scipy_trim_mean(rng: np.random.Generator) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for n in (4, 5, 7, 12, 33):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_other_aggregates() -> None:
    x = [0.2, 0.5, 1.5, 0.8]
    assert mean(x) == pytest.approx(0.75)
    assert median(x) == pytest.approx(0.65)
    # Shortfalls below 1: 0.8 + 0.5 + 0 + 0.2 = 1.5 over 4 runs.
    assert optimality_gap(x) == pytest.approx(0.375)


def test_bootstrap_of_two_runs_spans_both() -> None:
    # Replicates of [0, 1] have mean 0 (p=1/4), 0.5 (p=1/2) or 1 (p=1/4), so the 2.5% and
    # 97.5% percentiles are exactly 0 and 1.
    interval = stratified_bootstrap_ci({"t": [0.0, 1.0]}, mean, rng=np.random.default_rng(1), reps=2000)
    assert (interval.point, interval.low, interval.high, interval.n) == (0.5, 0.0, 1.0, 2)


def test_bootstrap_is_deterministic_and_contains_the_point(rng: np.random.Generator) -> None:
    scores = {"a": rng.normal(size=5), "b": rng.normal(3.0, 2.0, size=7)}
    first = stratified_bootstrap_ci(scores, iqm, rng=np.random.default_rng(7), reps=500)
    second = stratified_bootstrap_ci(scores, iqm, rng=np.random.default_rng(7), reps=500)
    assert first == second
    assert first.low <= first.point <= first.high
    assert first.low < first.high
    assert first.point == pytest.approx(iqm(np.concatenate(list(scores.values()))))


def test_stratification_resamples_within_tasks() -> None:
    # Every stratified replicate holds exactly 3 runs of task a and 4 of task b, in that order.
    a, b = np.array([0.0, 1.0, 2.0]), np.array([10.0, 11.0, 12.0, 13.0])
    seen: list[np.ndarray] = []

    def record(pooled: np.ndarray) -> float:
        seen.append(pooled.copy())
        return float(pooled.mean())

    stratified_bootstrap_ci({"a": a, "b": b}, record, rng=np.random.default_rng(0), reps=200)
    replicates = np.stack(seen[1:])  # seen[0] is the observed point estimate
    assert replicates.shape == (200, 7)
    assert np.isin(replicates[:, :3], a).all() and np.isin(replicates[:, 3:], b).all()
    # With constant tasks, the task mix is fixed, so the pooled mean cannot move at all.
    interval = stratified_bootstrap_ci({"a": [0.0] * 3, "b": [10.0] * 4}, mean, rng=np.random.default_rng(0))
    assert interval.low == interval.high == pytest.approx(40.0 / 7.0)


def test_bootstrap_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="no tasks"):
        stratified_bootstrap_ci({}, rng=rng)
    with pytest.raises(ConfigError, match="task 'x'"):
        stratified_bootstrap_ci({"x": []}, rng=rng)
    with pytest.raises(ConfigError, match="finite"):
        stratified_bootstrap_ci({"x": [1.0, float("nan")]}, rng=rng)
    with pytest.raises(ConfigError, match="confidence"):
        stratified_bootstrap_ci({"x": [1.0]}, rng=rng, confidence=1.5)


def test_bootstrap_curve_handles_runs_of_different_length() -> None:
    curves = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, np.nan]])
    center, low, high = bootstrap_curve(curves, rng=np.random.default_rng(0), reps=1000)
    np.testing.assert_allclose(center, [2.0, 3.0, 3.0])
    # Two runs per step: replicate means are run 1, run 2 or their average -> percentiles hit both.
    np.testing.assert_allclose(low[:2], [1.0, 2.0])
    np.testing.assert_allclose(high[:2], [3.0, 4.0])
    # Only one run reached the last step: no spread there.
    assert low[2] == high[2] == 3.0
