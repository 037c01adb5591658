"""``rlvlmf train``: one training run (RL-VLM-F by default), resumable."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvlmf.errors import UserError
from rlvlmf.feedback.store import DEFAULT_STORE_DIR

if TYPE_CHECKING:
    from rlvlmf.training.config import TrainConfig

DEFAULT_PRESET = "cartpole-swingup"
DEFAULT_REWARD = "preference"
DEFAULT_BACKEND = "scripted"

EPILOG = """examples:
  rlvlmf train --preset cartpole-swingup --steps 20000            # scripted teacher, offline
  rlvlmf train --preset drawer-open --backend openai:gpt-4o --set labeler.max_cost_usd=20
  rlvlmf train --preset pendulum --reward env                     # ground-truth baseline
  rlvlmf train --env dmc:hopper-hop --goal "to make the one-legged robot hop forward" --camera 0
  rlvlmf train --env gym:my_package.envs:MyArm-v0 --goal "to touch the red ball"   # your own env
  rlvlmf train --resume runs/cartpole-swingup-preference-scripted-s0
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train SAC on a learned (VLM-feedback), ground-truth, CLIP or code reward",
        description="Train one run. Results go to OUT/NAME: config.json, metrics.csv, eval.jsonl, "
        "videos/, tensorboard/, checkpoints/, reward_model.pt, summary.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", help="env preset, i.e. env + goal + schedule (see `rlvlmf envs`; "
                        f"default: {DEFAULT_PRESET} unless --env is given)")
    parser.add_argument("--env", help="any env instead of a preset: dmc:DOMAIN-TASK, gym:ID, gym:MODULE:ID "
                        "(your own env, registered when MODULE is imported) or metaworld:TASK; needs --goal")
    parser.add_argument("--goal", help="with --env: the goal sentence the VLM is given, e.g. \"to open the drawer\"")
    parser.add_argument("--camera", help="with --env: camera name or id (default: the env's own view)")
    # reward, backend and seed default to None so that --config can tell whether they were given.
    parser.add_argument("--reward",
                        help=f"preference (RL-VLM-F), env (ground truth), clip, or code:FILE (default: {DEFAULT_REWARD})")
    parser.add_argument("--backend", help="who labels queries, e.g. scripted, openai:gpt-4o, gemini:gemini-2.5-flash, "
                        f"hf:PATH; for --reward clip a clip:MODEL (default: {DEFAULT_BACKEND})")
    parser.add_argument("--backend-opt", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="backend option, repeatable (e.g. eps_mistake=0.1, mode=one-stage)")
    parser.add_argument("--seed", type=int, help="seed of the env, agent, query sampling and scripted teacher (default: 0)")
    parser.add_argument("--steps", type=int, help="env steps (default: the preset's schedule)")
    parser.add_argument("--out", default="runs", help="folder of run folders (default: %(default)s)")
    parser.add_argument("--name", help="run folder name (default: PRESET-REWARD-BACKEND-sSEED)")
    parser.add_argument("--store", default=DEFAULT_STORE_DIR, help="query store folder (default: %(default)s)")
    parser.add_argument("--export-dir", default=os.environ.get("RLVLMF_REWARD_MODELS", "reward_models"),
                        help="where the final reward model is also exported as NAME.pt "
                        "(default: $RLVLMF_REWARD_MODELS or %(default)s)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override any config field, repeatable: num_interact=2000, sac.batch_size=256, "
                        "reward_model.input=state, labeler.max_cost_usd=5, feedback_lag=2000 (label and fit "
                        "the reward while training goes on)")
    parser.add_argument("--offline", action="store_true", help="answer queries only from the store (no VLM calls)")
    parser.add_argument("--config", metavar="FILE", help="start a run from a saved config.json (a sweep's, or a run's "
                        "edited copy) instead of the flags that build one")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its latest checkpoint")
    parser.add_argument("--checkpoint", help="with --resume: the checkpoint folder to continue from")
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlvlmf.training.builder import default_run_name
    from rlvlmf.training.loop import run_training
    from rlvlmf.training.run_files import RunFiles

    progress = not args.no_progress
    if args.resume:
        run_dir = Path(args.resume)
        if args.overrides or args.steps or args.preset or args.env or args.goal or args.camera or args.config:
            raise UserError("--resume continues a run with its saved config; --set, --steps, --preset, --env, "
                            "--goal, --camera and --config cannot change it")
        if RunFiles(run_dir).is_complete():
            print(f"{run_dir} is already complete; results in {run_dir}")
            return 0
        summary = run_training(None, run_dir, resume=True, checkpoint=args.checkpoint, store_dir=args.store,
                               export_dir=args.export_dir, progress=progress, stop_after=args.stop_after)
    else:
        if args.checkpoint:
            raise UserError("--checkpoint goes with --resume")
        config = config_from_args(args)
        run_dir = Path(args.out) / (args.name or default_run_name(config))
        # run_training refuses a folder holding a started run; one whose start failed is reused.
        summary = run_training(config, run_dir, store_dir=args.store, export_dir=args.export_dir, progress=progress,
                               stop_after=args.stop_after)
    print(json.dumps(summary.__dict__, indent=2))
    if summary.extra.get("complete"):
        print(f"results in {summary.run_dir} ({', '.join(RunFiles(Path(summary.run_dir)).results())})")
        return 0
    print(f"stopped at step {summary.steps}; continue with: rlvlmf train --resume {summary.run_dir}", flush=True)
    stopped_by = summary.extra.get("stopped_by")
    # A run stopped by a signal exits as such (130 for Ctrl-C), so scripts and sweeps see it did not finish.
    return 128 + signal.Signals[stopped_by].value if stopped_by else 0


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: read from ``--config``, or built from the preset or env and the other flags.

    Raises:
        UserError: ``--config`` with a flag that would change it, or conflicting env flags.
    """
    from rlvlmf.training.builder import build_config, read_config

    if args.config:
        given = [flag for flag, value in [
            ("--preset", args.preset), ("--env", args.env), ("--goal", args.goal), ("--camera", args.camera),
            ("--reward", args.reward), ("--backend", args.backend), ("--backend-opt", args.backend_opt),
            ("--seed", args.seed), ("--steps", args.steps), ("--set", args.overrides), ("--offline", args.offline),
        ] if value not in (None, [], False)]
        if given:
            raise UserError(f"--config is the whole config: edit the file instead of adding {', '.join(given)}")
        return read_config(Path(args.config))
    fields: dict[str, Any] = {
        "reward": args.reward or DEFAULT_REWARD, "backend": args.backend or DEFAULT_BACKEND,
        "seed": 0 if args.seed is None else args.seed, "backend_options": tuple(args.backend_opt), **env_fields(args),
    }
    if args.steps is not None:
        fields["steps"] = args.steps
    overrides = list(args.overrides) + (["labeler.offline=true"] if args.offline else [])
    return build_config(str(fields.pop("preset")), overrides, **fields)


def env_fields(args: argparse.Namespace) -> dict[str, str]:
    """The run's env from ``--preset`` or ``--env``/``--goal``/``--camera`` (config fields).

    Raises:
        UserError: Both a preset and an env, or ``--goal``/``--camera`` without ``--env``.
    """
    if args.env:
        if args.preset:
            raise UserError("--preset and --env are alternatives: a preset already names its env and goal")
        if args.goal is None:
            raise UserError(f"--env {args.env} needs --goal: the sentence the VLM is told, e.g. \"to open the drawer\"")
        return {"preset": "", "env": args.env, "goal": args.goal, "camera": args.camera or ""}
    if args.goal is not None or args.camera is not None:
        raise UserError("--goal and --camera go with --env; a preset fixes its own goal and camera")
    return {"preset": args.preset or DEFAULT_PRESET}
