"""``rlvlmf sweep``: many seeds and presets, locally or on Ray (``rlvlmf report`` reads the results)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from rlvlmf.errors import UserError
from rlvlmf.evaluation.sweep import (
    PYTHON,
    EnvTask,
    RunOutcome,
    RunState,
    Variant,
    check_manifest,
    expand_grid,
    parse_names,
    parse_seeds,
    prepare_configs,
    run_state,
    run_sweep,
    train_command,
)

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` sub-command."""
    sweep = subparsers.add_parser(
        "sweep",
        help="train a grid of presets x seeds (local process pool or Ray); resumable",
        description="Run `rlvlmf train` for every preset and seed. Finished runs (with summary.json) "
        "are skipped, unfinished ones resumed, so re-running the same command continues a sweep. "
        "Run folders are OUT/METHOD__PRESET__sSEED; logs go to OUT/logs/.",
    )
    sweep.add_argument("--presets", help="comma-separated preset names")
    sweep.add_argument("--env", help="instead of presets, one env: dmc:DOMAIN-TASK, gym:ID, gym:MODULE:ID or "
                       "metaworld:TASK (as in `rlvlmf train --env`); needs --goal")
    sweep.add_argument("--goal", help="with --env: the goal sentence the VLM is given")
    sweep.add_argument("--camera", help="with --env: camera name or id (default: the env's own view)")
    sweep.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-4 or 0,3,7 (default: 0-2)")
    sweep.add_argument("--backend", help="feedback backend spec passed to every run")
    sweep.add_argument("--reward", help="preference, env, clip or code:FILE (default: the preset's)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="config override passed to every run (repeatable)")
    sweep.add_argument("--steps", type=int, help="environment steps per run (default: the preset's)")
    sweep.add_argument("--out", default="runs", help="folder of the run folders (default: runs)")
    sweep.add_argument("--store", help="query store shared by all runs (default: train's default)")
    sweep.add_argument(
        "--method",
        help="method label in run names and reports (default: reward and backend; name methods that differ only by --set)",
    )
    sweep.add_argument("--workers", type=int, default=1, help="runs at once (default: 1)")
    sweep.add_argument("--ray", metavar="ADDRESS",
                       help="run on a Ray cluster (auto, local, ray://host:port); needs pip install 'rlvlmf[ray]'")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and their state, start nothing")
    sweep.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Expand the grid, run it, and print one line per run; exit 1 if any run failed."""
    variant = Variant.from_args(args.reward, args.backend, args.overrides, args.method)
    specs = expand_grid(
        _tasks(args), parse_seeds(args.seeds), [variant], out=args.out, steps=args.steps, store=args.store
    )
    if args.dry_run:
        check_manifest(specs)
        prepare_configs(specs)  # validates every new run's config; writes nothing
        for spec in specs:
            state = run_state(spec.run_dir)
            argv = [sys.executable if a == PYTHON else a for a in train_command(spec, state)]
            print(f"{state.value:9s} {spec.name}  $ {' '.join(argv)}")
        return 0
    total = len(specs)
    counter = iter(range(1, total + 1))

    def on_done(outcome: RunOutcome) -> None:
        if outcome.state is RunState.FINISHED:
            what = "already finished, skipped"
        elif outcome.returncode is None:
            what = "not started (sweep stopped)"
        else:
            verb = "resumed" if outcome.state is RunState.PARTIAL else "ran"
            what = f"{verb}, exit {outcome.returncode} after {outcome.wall_s:.0f} s"
            what += "" if outcome.ok else f"; log: {outcome.log}"
        print(f"[{next(counter)}/{total}] {outcome.spec.name}: {what}", flush=True)

    # SIGTERM (e.g. a cluster scheduler) should stop runs as cleanly as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        result = run_sweep(specs, workers=args.workers, ray_address=args.ray, on_done=on_done)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.failed:
        print(f"{len(result.failed)} of {total} runs failed; re-run the same command to retry them", file=sys.stderr)
        return 1
    print(f"sweep done: {total} runs in {args.out} ({len(result.skipped)} were already finished)")
    return 0


def _tasks(args: argparse.Namespace) -> list[str | EnvTask]:
    """The sweep's tasks: the ``--presets`` names, or the one ``--env`` with its ``--goal``."""
    if args.env:
        if args.presets:
            raise UserError("--presets and --env are alternatives; sweep presets or one env at a time")
        if not (args.goal or "").strip():
            raise UserError(f"--env {args.env} needs a non-empty --goal: the sentence the VLM is told")
        return [EnvTask(args.env, args.goal.strip(), args.camera or "")]
    if args.goal is not None or args.camera is not None:
        raise UserError("--goal and --camera go with --env; a preset fixes its own goal and camera")
    if not args.presets:
        raise UserError("say what to train on: --presets NAME[,NAME...] or --env SPEC --goal TEXT")
    return list(parse_names(args.presets))


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
