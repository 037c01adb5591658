"""Label-efficiency study: ground-truth reward vs scripted teacher vs noisy scripted teacher.

Runs a sweep (``rlvlmf.evaluation.sweep``) of three methods on DMC cartpole-swingup and walker-walk
over several seeds, then writes the report (curves, final IQM with 95% stratified-bootstrap
CIs, labels used) to ``docs/label_efficiency/`` and the measured table, with the command
that reproduced it, to ``docs/label_efficiency.md``. Re-running the same command resumes
the sweep (finished runs are skipped) and rewrites the report.

Methods:
  * ``ground-truth``: SAC on the environment reward (``--reward env``), no labels;
  * ``scripted``: PEBBLE with the perfectly rational B-Pref teacher;
  * ``scripted-noisy``: PEBBLE with a noisy B-Pref teacher (see ``NOISY_TEACHER``).
With ``--budgets``, each teacher method is run once per label budget.

Usage:
  python benchmarks/label_efficiency.py --seeds 0-2 --steps 100000 --workers 3
  python benchmarks/label_efficiency.py --seeds 0-2 --budgets 200,1000 --ray auto --workers 12
  python benchmarks/label_efficiency.py --dry-run    # list the runs only
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rlvlmf.errors import UserError
from rlvlmf.evaluation.report import build_report, markdown_tables, write_report
from rlvlmf.evaluation.runs import find_runs
from rlvlmf.evaluation.sweep import (
    PYTHON,
    RunState,
    Variant,
    expand_grid,
    parse_names,
    parse_seeds,
    run_state,
    run_sweep,
    train_command,
)

# ---- Study settings the lead may adjust --------------------------------------------------
PRESETS = ("cartpole-swingup", "walker-walk")
"""DMC presets of the study (names from ``rlvlmf envs``)."""

CLEAN_TEACHER = "scripted"
"""Backend spec of the perfectly rational teacher (B-Pref ``oracle``)."""

NOISY_TEACHER = "scripted:mistake"
"""Backend spec of the noisy teacher: B-Pref ``mistake`` (labels flipped with p = 0.1).
Other noise: ``scripted:stoc`` (Bradley-Terry, beta 1), ``scripted:equal``, ``scripted:skip``,
``scripted:myopic``; options can be set in the spec, see ``rlvlmf backends``."""

NOISY_OVERRIDES: tuple[str, ...] = ()
"""Extra ``--set`` overrides for the noisy teacher, if its noise is set through the config."""

BUDGET_KEY = "max_feedback"
"""Config key of the total label budget, used by ``--budgets`` (``--set KEY=N``)."""
# -------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def study_variants(budgets: tuple[int, ...], extra: tuple[str, ...]) -> list[Variant]:
    """The methods: ground truth, then the clean and noisy teachers (once per budget, if any)."""
    variants = [Variant("ground-truth", reward="env", overrides=extra)]
    for budget in budgets or (None,):
        suffix, budget_set = ("", ()) if budget is None else (f"-{budget}", (f"{BUDGET_KEY}={budget}",))
        variants.append(Variant(f"scripted{suffix}", "preference", CLEAN_TEACHER, (*budget_set, *extra)))
        variants.append(
            Variant(f"scripted-noisy{suffix}", "preference", NOISY_TEACHER, (*budget_set, *NOISY_OVERRIDES, *extra))
        )
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--seeds", default="0-2", help="seeds (default 0-2: three seeds)")
    parser.add_argument("--steps", type=int, help="environment steps per run (default: the preset's)")
    parser.add_argument("--budgets", default="", help="label budgets, e.g. 200,1000 (default: the preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every run")
    parser.add_argument("--out", default=str(ROOT / "runs" / "label_efficiency"), help="run folders")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where the report goes")
    parser.add_argument("--store", help="query store shared by the runs (default: OUT/queries)")
    parser.add_argument("--workers", type=int, default=1, help="runs at once")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster instead of locally")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    args = parser.parse_args(argv)

    budgets = tuple(int(b) for b in parse_names(args.budgets, "budgets")) if args.budgets.strip() else ()
    variants = study_variants(budgets, tuple(args.overrides))
    out = Path(args.out)
    specs = expand_grid(
        parse_names(args.presets), parse_seeds(args.seeds), variants, out=out, steps=args.steps,
        store=args.store or out / "queries",
    )
    if args.dry_run:
        for spec in specs:
            state = run_state(spec.run_dir)
            argv_ = [sys.executable if a == PYTHON else a for a in train_command(spec, state)]
            print(f"{state.value:9s} {shlex.join(argv_)}")
        return 0

    start = time.monotonic()
    result = run_sweep(
        specs,
        workers=args.workers,
        ray_address=args.ray,
        on_done=lambda o: print(f"{o.spec.name}: {o.state.value}, exit {o.returncode}, {o.wall_s:.0f} s", flush=True),
    )
    sweep_s = time.monotonic() - start
    finished = [s for s in specs if run_state(s.run_dir) is RunState.FINISHED]
    print(f"{len(finished)}/{len(specs)} runs finished, {len(result.failed)} failed, sweep took {sweep_s:.0f} s")

    runs = [r for r in find_runs([out]) if r.path.name in {s.name for s in specs}]
    try:
        report = build_report(runs, rng=np.random.default_rng(0), reps=args.reps)
    except UserError as exc:  # e.g. runs shorter than one episode have no evaluation
        print(f"no report: {exc}", file=sys.stderr)
        return 2
    docs = Path(args.docs)
    write_report(report, docs / "label_efficiency", title="Label efficiency: ground truth vs scripted teachers")
    table = markdown_tables(report)
    command = shlex.join(["python", "benchmarks/label_efficiency.py", *(argv if argv is not None else sys.argv[1:])])
    (docs / "label_efficiency.md").write_text(
        "# Label efficiency: ground-truth reward vs scripted vs noisy scripted teacher\n\n"
        f"Measured {datetime.date.today().isoformat()} at commit {_commit()} on {platform.node() or 'unknown'} "
        f"({platform.processor() or platform.machine()}); {len(finished)}/{len(specs)} runs finished, "
        f"sweep wall time {sweep_s:.0f} s.\n\n"
        f"Reproduce (resumes, then rewrites this page):\n\n```\n{command}\n```\n\n"
        f"Noisy teacher: `{NOISY_TEACHER}` {' '.join(NOISY_OVERRIDES)}; clean teacher: `{CLEAN_TEACHER}`.\n"
        "Final score = mean return of a run's last evaluation; IQM over seeds with 95% bootstrap CIs.\n\n"
        f"{table}\n"
        "Plots and the full page: [label_efficiency/report.html](label_efficiency/report.html).\n\n"
        "![curves](label_efficiency/return_curves.png)\n\n![final](label_efficiency/final_iqm.png)\n"
    )
    print(table)
    print(f"wrote {docs / 'label_efficiency.md'}")
    return 1 if result.failed else 0


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
