"""``rlvlmf reward``: look inside a trained reward model.

``rlvlmf reward saliency --model PATH --frames A.png B.png --out DIR`` writes, per frame,
``<name>_saliency.png``: the frame (resized to the model's input size) with its saliency map
blended over it. FLS models (``encoder=fls``) show their attention weights, other image
models the gradient of the reward with respect to the pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rlvlmf.errors import UserError
from rlvlmf.feedback.images import decode_png, encode_png


def register_saliency(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reward saliency``."""
    parser = subparsers.add_parser(
        "saliency",
        help="saliency overlays of frames under a trained reward model",
        description="Write one PNG per frame with the reward model's saliency map blended over it: the "
        "FLS attention weights for models trained with encoder=fls, otherwise the pixel gradient.",
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="reward model file saved by training")
    parser.add_argument("--frames", required=True, nargs="+", metavar="PNG", help="frames to explain")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the overlay PNGs")
    parser.add_argument("--method", choices=("auto", "gradient", "fls"), default="auto", help="map kind (default: %(default)s)")
    parser.add_argument("--scale", type=int, default=4, metavar="N", help="upscale overlays N times (default: %(default)s)")
    parser.set_defaults(func=run_saliency)


def _read_frame(path: str) -> np.ndarray:
    try:
        return decode_png(Path(path).read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read frame {path!r}: {exc.strerror or exc}") from None


def run_saliency(args: argparse.Namespace) -> int:
    """Write the overlays and print their paths."""
    # Torch is imported only when a reward command runs, so `rlvlmf --help` stays fast.
    from rlvlmf.reward.ensemble import load_reward_model
    from rlvlmf.reward.saliency import overlay, resize_frames, reward_model_saliency

    if args.scale < 1:
        raise UserError(f"--scale must be >= 1, got {args.scale}")
    frames = [_read_frame(path) for path in args.frames]
    model = load_reward_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = model.config.frame_size
    resized = np.stack([resize_frames(frame[None], size)[0] for frame in frames])
    maps = reward_model_saliency(model, resized, args.method)
    used: set[str] = set()
    for index, (path, frame, saliency) in enumerate(zip(args.frames, resized, maps)):
        name = f"{Path(path).stem}_saliency.png"
        name = f"{index:03d}_{name}" if name in used else name  # same file name from two folders
        used.add(name)
        target = out / name
        target.write_bytes(encode_png(overlay(frame, saliency, scale=args.scale)))
        print(target)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reward`` command group."""
    parser = subparsers.add_parser("reward", help="inspect trained reward models", description="Inspect trained reward models.")
    group = parser.add_subparsers(dest="reward_command", metavar="SUBCOMMAND")
    register_saliency(group)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
