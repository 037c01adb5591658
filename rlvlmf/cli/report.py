"""``rlvlmf report``: learning and training curves, final IQM with CIs, labels and cost over runs."""

from __future__ import annotations

import argparse

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    report = subparsers.add_parser(
        "report",
        help="aggregate runs: learning and training curves, final IQM with bootstrap CIs, success, labels, cost",
        description="Group run folders by method (reward + backend, or the sweep's label) and task (preset); "
        "write PNG plots (evaluation return and success, training return, label and reward-fit accuracy, "
        "final IQM), report.md, a self-contained report.html and report.json.",
    )
    report.add_argument("runs", nargs="+", help="run folders or folders containing them")
    report.add_argument("--out", default="report", help="output folder (default: report)")
    report.add_argument("--title", default="rlvlmf report", help="title of the page")
    report.add_argument("--reps", type=int, default=2000, help="bootstrap replicates (default: 2000)")
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load runs, aggregate and write the report files."""
    from rlvlmf.evaluation.report import build_report, markdown_tables, write_report
    from rlvlmf.evaluation.runs import find_runs

    runs = find_runs(args.runs)
    report = build_report(runs, rng=np.random.default_rng(args.seed), reps=args.reps)
    written = write_report(report, args.out, title=args.title)
    print(markdown_tables(report))
    print(f"wrote {written['html']} and {written['markdown']} ({len(runs)} runs)")
    return 0
