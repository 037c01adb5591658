"""``rlvlmf envs``: list the presets, or render a preview image of each."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from rlvlmf.envs.presets import PRESETS, Preset, get_preset
from rlvlmf.errors import ConfigError

PREVIEW_STEPS = 30
"""Random actions taken before the second preview frame."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``envs`` sub-command."""
    parser = subparsers.add_parser(
        "envs",
        help="list environment presets or render previews",
        description="List the environment presets, or with --preview write one PNG per preset "
        "(a reset frame beside a frame after random actions).",
    )
    parser.add_argument("--preview", metavar="DIR", type=Path, help="write preview PNGs here")
    parser.add_argument(
        "--presets", metavar="A,B", help="comma-separated preset names (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for resets and random actions")
    parser.set_defaults(func=run)


def selected_presets(names: str | None) -> list[Preset]:
    """Presets named in a comma-separated list, or all of them.

    Raises:
        UnknownNameError: A name is not a preset.
        ConfigError: The list is empty.
    """
    if names is None:
        return list(PRESETS.values())
    chosen = [get_preset(name.strip()) for name in names.split(",") if name.strip()]
    if not chosen:
        raise ConfigError(f"--presets is empty; choose from {', '.join(PRESETS)}")
    return chosen


def describe(preset: Preset) -> str:
    """One listing line: name, spec, sizes and goal."""
    crop = "x".join(map(str, preset.crop.as_tuple()[2:])) if preset.crop else "none"
    return (
        f"{preset.name:<17} {preset.spec:<26} render {preset.width}x{preset.height} "
        f"crop {crop:<8} vlm {preset.vlm_frame_size:<4} reward {preset.reward_frame_size:<3} "
        f"goal: {preset.task.goal}"
    )


def preview_frames(preset: Preset, seed: int, steps: int = PREVIEW_STEPS) -> np.ndarray:
    """A reset frame and a frame after ``steps`` random actions, side by side.

    Returns:
        ``(S, 2 * S, 3)`` uint8 image with ``S = preset.vlm_frame_size``.
    """
    from rlvlmf.envs.registry import make_env

    env = make_env(preset.name)
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        first = env.render()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        return np.concatenate([first, env.render()], axis=1)
    finally:
        env.close()


def run(args: argparse.Namespace) -> int:
    """List presets, or write previews when ``--preview`` is given."""
    presets = selected_presets(args.presets)
    if args.preview is None:
        for preset in presets:
            print(describe(preset))
        return 0
    args.preview.mkdir(parents=True, exist_ok=True)
    for preset in tqdm(presets, desc="previews", unit="env"):
        path = args.preview / f"{preset.name}.png"
        Image.fromarray(preview_frames(preset, args.seed)).save(path)
    print(f"wrote {len(presets)} previews to {args.preview}")
    return 0
