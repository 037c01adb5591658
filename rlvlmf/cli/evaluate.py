"""``rlvlmf evaluate RUN_DIR``: run a trained policy, print its return and success with CIs."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  rlvlmf evaluate runs/cartpole-swingup-preference-scripted-s0
  rlvlmf evaluate runs/drawer-open-preference-gemini_gemini-2.5-flash-s0 --episodes 50 --video drawer.mp4
  rlvlmf evaluate runs/walker-walk-env-s0 --checkpoint step_000200000 --json
"""

CONFIDENCE = 0.95
BOOTSTRAP_REPS = 2000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="run a trained policy: return, success rate and their 95%% CIs, optional video",
        description="Load RUN_DIR's policy (latest checkpoint, or --checkpoint) and run it deterministically for "
        "N episodes in the run's env, each from its own seeded start. Prints the mean env return and the "
        "success rate (where the env reports success) with 95% bootstrap confidence intervals over episodes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `rlvlmf train`")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run (default: %(default)s)")
    parser.add_argument("--checkpoint", help="checkpoint folder name, e.g. step_000020000 (default: the latest)")
    parser.add_argument("--video", metavar="FILE", help="write the first episode as a video: FILE.gif or FILE.mp4")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode's start (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print."""
    import numpy as np

    from rlvlmf.errors import UserError
    from rlvlmf.evaluation.stats import mean, stratified_bootstrap_ci
    from rlvlmf.training.evaluate import VIDEO_SUFFIXES, evaluate_policy
    from rlvlmf.training.trained_agent import load_agent

    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    if args.video and not args.video.lower().endswith(VIDEO_SUFFIXES):
        raise UserError(f"--video {args.video}: name a {' or '.join(VIDEO_SUFFIXES)} file")
    policy = load_agent(args.run_dir, args.checkpoint)
    env = policy.make_env()
    try:
        result = evaluate_policy(env, policy, args.episodes, seed=args.seed, video_path=args.video)
    finally:
        env.close()
    rng = np.random.default_rng(args.seed)
    returns = stratified_bootstrap_ci({"episodes": result.returns}, mean, rng=rng, reps=BOOTSTRAP_REPS,
                                      confidence=CONFIDENCE)
    success = None
    if result.successes is not None:
        success = stratified_bootstrap_ci({"episodes": [float(s) for s in result.successes]}, mean, rng=rng,
                                          reps=BOOTSTRAP_REPS, confidence=CONFIDENCE)
    record = {
        "run_dir": args.run_dir, "checkpoint": policy.checkpoint, "episodes": args.episodes,
        "return_mean": returns.point, "return_ci": [returns.low, returns.high],
        "success_rate": None if success is None else success.point,
        "success_ci": None if success is None else [success.low, success.high],
        "returns": result.returns, "lengths": result.lengths, "video": args.video,
    }
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{args.run_dir} ({policy.checkpoint}), {args.episodes} episodes:")
    print(f"  return        {returns.point:10.2f}   95% CI [{returns.low:.2f}, {returns.high:.2f}]")
    if success is None:
        print("  success rate           -   (the env reports no success)")
    else:
        print(f"  success rate  {success.point:10.2f}   95% CI [{success.low:.2f}, {success.high:.2f}]")
    if args.video:
        print(f"  video         {args.video}")
    return 0
