"""Evaluation across runs: robust aggregate statistics and reports (plots, tables, HTML)."""

from rlvlmf.evaluation.report import Report, build_report, write_report
from rlvlmf.evaluation.runs import EvalPoint, Run, find_runs, load_run
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
    "EvalPoint",
    "Report",
    "Run",
    "build_report",
    "find_runs",
    "load_run",
    "write_report",
    "Interval",
    "bootstrap_curve",
    "iqm",
    "mean",
    "median",
    "optimality_gap",
    "stratified_bootstrap_ci",
]
