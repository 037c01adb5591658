"""Evaluation across runs: robust aggregate statistics and reports (plots, tables, HTML)."""

from rlvlmf.evaluation.stats import (
    AGGREGATES,
    Interval,
    bootstrap_curve,
    iqm,
    mean,
    median,
    optimality_gap,
    stratified_bootstrap_ci,
)

__all__ = [
    "AGGREGATES",
    "Interval",
    "bootstrap_curve",
    "iqm",
    "mean",
    "median",
    "optimality_gap",
    "stratified_bootstrap_ci",
]
