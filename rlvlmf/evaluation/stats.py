"""Aggregate statistics for few-seed RL results, following rliable (Agarwal et al., 2021).

Scores are per-run numbers (e.g. the mean return of a run's final evaluation), grouped by
task. Point estimates are computed on all runs of all tasks pooled together; confidence
intervals come from a *stratified* bootstrap: runs are resampled with replacement within
each task (a task keeps its number of runs), and the aggregate is recomputed on each
resample. Percentile intervals of those recomputations are reported.

All functions are pure; randomness comes from an ``np.random.Generator`` the caller passes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from rlvlmf.errors import ConfigError

Aggregate = Callable[[np.ndarray], float]
"""Maps a flat array of scores, shape (n,), to one number."""


def iqm(scores: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores.

    Drops ``floor(n / 4)`` of the lowest and of the highest scores and averages the rest,
    like ``scipy.stats.trim_mean(scores, 0.25)`` which rliable uses.

    Args:
        scores: Any shape; flattened, shape (n,) with n >= 1.

    Returns:
        The interquartile mean.
    """
    flat = _flat(scores)
    cut = int(0.25 * flat.size)
    kept = np.sort(flat)[cut : flat.size - cut]
    return float(kept.mean())


def mean(scores: ArrayLike) -> float:
    """Arithmetic mean of all scores (flattened)."""
    return float(_flat(scores).mean())


def median(scores: ArrayLike) -> float:
    """Median of all scores (flattened)."""
    return float(np.median(_flat(scores)))


def optimality_gap(scores: ArrayLike, target: float = 1.0) -> float:
    """How far scores fall short of ``target`` on average: ``mean(max(target - x, 0))``.

    Meant for normalised scores (target 1.0 = solved); lower is better.
    """
    return float(np.maximum(target - _flat(scores), 0.0).mean())


AGGREGATES: dict[str, Aggregate] = {
    "iqm": iqm,
    "mean": mean,
    "median": median,
    "optimality_gap": optimality_gap,
}
"""Aggregates by name, for configs and the report."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval.

    Attributes:
        point: The aggregate on the observed scores.
        low: Lower end of the interval.
        high: Upper end of the interval.
        confidence: Coverage of the interval, e.g. 0.95.
        n: Number of scores (runs) the estimate is based on.
    """

    point: float
    low: float
    high: float
    confidence: float
    n: int

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")


def stratified_bootstrap_ci(
    scores_by_task: Mapping[str, ArrayLike],
    aggregate: Aggregate = iqm,
    *,
    rng: np.random.Generator,
    reps: int = 2000,
    confidence: float = 0.95,
) -> Interval:
    """Point estimate and percentile CI of ``aggregate`` under a stratified bootstrap.

    Each bootstrap replicate draws, for every task independently, as many runs as that task
    has, with replacement from that task's runs; the aggregate is taken over the pooled
    replicate. With one task this is the ordinary bootstrap over runs.

    Args:
        scores_by_task: Task name -> per-run scores, shape (runs_t,), runs_t >= 1; tasks
            may have different numbers of runs.
        aggregate: Maps pooled scores, shape (sum_t runs_t,), to a number.
        rng: Source of the resampling.
        reps: Number of bootstrap replicates.
        confidence: Interval coverage in (0, 1).

    Returns:
        The aggregate on the observed scores and the ``confidence`` percentile interval.

    Raises:
        ConfigError: No tasks, a task without runs, non-finite scores, or bad reps/confidence.
    """
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if not scores_by_task:
        raise ConfigError("no tasks to aggregate")
    strata = [_flat(scores, what=f"scores of task {task!r}") for task, scores in scores_by_task.items()]
    pooled = np.concatenate(strata)
    point = aggregate(pooled)
    # One (reps, runs_t) index draw per task, then one pooled (reps, total) score matrix.
    resampled = np.concatenate([s[rng.integers(0, s.size, size=(reps, s.size))] for s in strata], axis=1)
    estimates = np.array([aggregate(row) for row in resampled])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return Interval(point=point, low=float(low), high=float(high), confidence=confidence, n=int(pooled.size))


def bootstrap_curve(
    curves: ArrayLike,
    *,
    rng: np.random.Generator,
    reps: int = 2000,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean learning curve over runs with a pointwise bootstrap CI (runs resampled).

    Runs that have no value at a step (NaN, e.g. an unfinished run) are left out at that
    step only; a step's mean and interval use the runs that reached it.

    Args:
        curves: Per-run curves on a shared step grid, shape (runs, steps); NaN = missing.
        rng: Source of the resampling.
        reps: Number of bootstrap replicates.
        confidence: Interval coverage in (0, 1).

    Returns:
        ``(mean, low, high)``, each shape (steps,); NaN where no run has a value.
    """
    data = np.asarray(curves, dtype=float)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ConfigError(f"curves must have shape (runs, steps) with runs >= 1, got {data.shape}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    runs = data.shape[0]
    picks = data[rng.integers(0, runs, size=(reps, runs))]  # (reps, runs, steps)
    # All-NaN columns are expected (steps no run reached); numpy warns about each.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        center = np.nanmean(data, axis=0)
        estimates = np.nanmean(picks, axis=1)  # (reps, steps); NaN where a replicate missed every run
        alpha = (1.0 - confidence) / 2.0
        low = np.nanquantile(estimates, alpha, axis=0)
        high = np.nanquantile(estimates, 1.0 - alpha, axis=0)
    return center, low, high


def _flat(scores: ArrayLike, what: str = "scores") -> np.ndarray:
    flat = np.asarray(scores, dtype=float).ravel()
    if flat.size == 0:
        raise ConfigError(f"{what}: need at least one value")
    if not np.all(np.isfinite(flat)):
        raise ConfigError(f"{what}: all values must be finite, got {flat.tolist()}")
    return flat
