"""``rlvlmf codegen``: have a chat VLM write verified sub-goal reward code for a preset (VLM-CaR).

Successful episodes to verify against come from ``--success-trajs FILE.npz`` when given, else
from the family's scripted expert (MetaWorld), else from random-policy episodes the env marks
successful (``info["success"]``) — which only works on tasks a random policy sometimes solves;
the command says so and stops when none succeed. Records go to ``<store>/codegen/<session>/``;
``--out FILE`` also writes the verified program as JSON for ``rlvlmf train --reward code:FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlvlmf.codegen.episodes import Episode, collect, load_trajectories, metaworld_expert, random_policy
from rlvlmf.codegen.generate import CodegenConfig, CodegenResult, agenerate_reward_code
from rlvlmf.codegen.records import CodegenRecorder, new_session_id
from rlvlmf.codegen.sandbox import SandboxLimits
from rlvlmf.codegen.verify import VerificationConfig
from rlvlmf.config import parse_options
from rlvlmf.envs.registry import make_env
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.chat import ChatBackend
from rlvlmf.feedback.registry import make_backend
from rlvlmf.feedback.store import DEFAULT_STORE_DIR

if TYPE_CHECKING:
    import gymnasium as gym

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``codegen`` sub-command."""
    parser = subparsers.add_parser(
        "codegen",
        help="have a chat VLM write verified sub-goal reward code (VLM-CaR)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--preset", required=True, metavar="NAME", help="env preset or family spec (rlvlmf envs lists them)")
    parser.add_argument(
        "--backend", required=True, metavar="SPEC", help="chat backend, e.g. openai:gpt-4o or gemini:gemini-2.5-flash"
    )
    parser.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="backend option (repeatable)")
    parser.add_argument("--out", metavar="FILE", help="write the verified program here as JSON")
    parser.add_argument(
        "--store", default=DEFAULT_STORE_DIR, metavar="DIR", help="store root; records go to DIR/codegen (default: %(default)s)"
    )
    parser.add_argument(
        "--max-attempts", type=int, default=3, metavar="K", help="replies asked for, first included (default: %(default)s)"
    )
    parser.add_argument("--max-tokens", type=int, default=4096, metavar="N", help="token limit per reply (default: %(default)s)")
    parser.add_argument("--success-trajs", metavar="FILE.npz", help="successful episodes: (T, obs_dim) or (E, T, obs_dim) arrays")
    parser.add_argument(
        "--success-episodes", type=int, default=10, metavar="N",
        help="expert/random episodes to roll out for successes (default: %(default)s)"
    )
    parser.add_argument(
        "--random-episodes", type=int, default=20, metavar="N",
        help="random-policy episodes for the 'rarely fires' check (default: %(default)s)"
    )
    parser.add_argument("--episode-steps", type=int, metavar="T", help="cap on episode length (default: the preset's)")
    parser.add_argument(
        "--min-success-fire", type=float, default=0.9, metavar="P",
        help="each function must fire on this fraction of successes (default: %(default)s)"
    )
    parser.add_argument(
        "--max-random-fire", type=float, default=0.1, metavar="P",
        help="the goal may fire on at most this fraction of random episodes (default: %(default)s)"
    )
    parser.add_argument(
        "--max-random-fire-subgoal", type=float, default=0.5, metavar="P", help="the same for sub-goals (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout-s", type=float, default=1.0, metavar="S", help="sandbox time limit per call (default: %(default)s)"
    )
    parser.add_argument("--memory-mb", type=int, default=1024, metavar="MB", help="sandbox memory limit (default: %(default)s)")
    parser.add_argument("--no-frames", action="store_true", help="send no example frames (text-only models)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rollouts (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Collect episodes, generate and verify code, write records; exit 0 when code passed."""
    config = CodegenConfig(
        max_attempts=args.max_attempts,
        max_tokens=args.max_tokens,
        verification=VerificationConfig(
            min_success_fire_rate=args.min_success_fire,
            max_random_fire_rate=args.max_random_fire,
            max_random_fire_rate_subgoal=args.max_random_fire_subgoal,
        ),
        limits=SandboxLimits(timeout_s=args.timeout_s, memory_mb=args.memory_mb),
    )
    for name in ("success_episodes", "random_episodes"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    backend = make_backend(args.backend, **parse_options(args.option))
    if not isinstance(backend, ChatBackend):
        raise ConfigError(f"backend {args.backend!r} is not a chat model; code generation needs one (e.g. openai:MODEL)")

    rng = np.random.default_rng(args.seed)
    env = make_env(args.preset)
    try:
        task = env.get_wrapper_attr("task")
        if not task.observation_doc.strip():
            raise UserError(f"{args.preset!r} has no documented observation fields; the model could not write code for it")
        randoms = collect(env, random_policy(env), args.random_episodes, rng, args.episode_steps)
        success, frames = _successes(args, env, rng, randoms)
    finally:
        env.close()
    obs_dim = randoms[0].obs.shape[1]
    if success[0].shape[1] != obs_dim:
        raise ConfigError(f"--success-trajs has obs_dim {success[0].shape[1]}, the env has {obs_dim}")
    print(f"verifying against {len(success)} successful and {len(randoms)} random episodes (obs_dim {obs_dim})")

    recorder = CodegenRecorder(args.store, new_session_id(task.name))
    result = asyncio.run(
        _generate(
            backend, task, success, [e.obs for e in randoms],
            frames=None if args.no_frames else frames, config=config, recorder=recorder,
        )
    )  # fmt: skip
    for attempt in result.attempts:
        verdict = "passed" if attempt.passed else "failed: " + "; ".join(attempt.failures())
        print(f"attempt {attempt.index}: {verdict}")
    print(f"records: {recorder.dir}")
    if result.program is None:
        print(f"no code passed verification in {len(result.attempts)} attempts")
        return 1
    if args.out:
        verified = {"passed": True, "session_id": result.session_id, "program": asdict(result.program)}
        Path(args.out).write_text(json.dumps(verified, indent=2))
        print(f"verified program: {args.out}")
    print(f"functions: {', '.join(result.program.function_names)}; train with --reward code:{args.out or result.session_id}")
    return 0


async def _generate(backend: ChatBackend, *args: Any, **kwargs: Any) -> CodegenResult:
    """``agenerate_reward_code``, closing the backend's connections in the same event loop."""
    try:
        return await agenerate_reward_code(backend, *args, **kwargs)
    finally:
        await backend.aclose()


def _successes(
    args: argparse.Namespace, env: gym.Env, rng: np.random.Generator, randoms: list[Episode]
) -> tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """Successful episodes and (start, goal) frames, from the best source available."""
    if args.success_trajs:
        return load_trajectories(args.success_trajs), None
    preset = env.get_wrapper_attr("preset")
    family_spec = env.get_wrapper_attr("family_spec")
    family, _, name = family_spec.partition(":")
    render = not args.no_frames
    if family == "metaworld":
        episodes = collect(env, metaworld_expert(name), args.success_episodes, rng, args.episode_steps, render)
        source = "MetaWorld's scripted policy"
    else:
        episodes = [e for e in randoms if e.success_step is not None]
        if len(episodes) < args.success_episodes:
            episodes += collect(env, random_policy(env), args.success_episodes, rng, args.episode_steps, render)
        source = "a random policy"
    won = [e for e in episodes if e.success_step is not None]
    if not won:
        where = preset.name if preset is not None else family_spec
        raise UserError(
            f"{source} reached success in none of {len(episodes)} episodes of {where} (or the env reports no "
            "info['success']); give --success-trajs FILE.npz with episodes of a scripted policy or a checkpoint"
        )
    frames = next(
        ((e.start_frame, e.success_frame) for e in won if e.start_frame is not None and e.success_frame is not None), None
    )
    return [e.obs for e in won], frames
