"""Pairs per second of the local backends (``clip`` and ``hf``), batch 1 vs batch 16.

Each backend labels the same random frame pairs in chunks of ``max_batch`` pairs, the way
the labeler hands them over (one ``alabel`` call per chunk). With batch 1 every pair is its
own forward pass (``clip``) or its own pair of ``generate`` calls (``hf``); with batch 16 the
chunk's frames are embedded together, and the chunk's stage-1 and stage-2 prompts are each
generated in one left-padded batch. Each figure is the median of several timed repeats
after a warm-up.

By default the models are the tiny random CLIP and LLaVA the tests build (so the numbers
measure the backends' own overhead and batching, not a real model's compute); pass
``--clip PATH`` / ``--hf PATH`` to time local checkpoints instead. Nothing is downloaded.

    .venv/bin/python benchmarks/bench_local_backends.py [--pairs 64] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rlvlmf.envs.task import TaskDescription  # noqa: E402
from rlvlmf.feedback.base import Backend, FramePair  # noqa: E402
from rlvlmf.feedback.registry import make_backend  # noqa: E402

TASK = TaskDescription(
    name="drawer-open", goal="to open the drawer",
    positive_phrases=("a drawer that is fully open",), negative_phrases=("a closed drawer",),
)


def pairs_per_second(backend: Backend, pairs: list[FramePair], batch: int, repeats: int) -> float:
    """Median over repeats of pairs labelled per second, in chunks of ``batch`` pairs."""

    async def run() -> None:
        for start in range(0, len(pairs), batch):
            await backend.alabel(pairs[start:start + batch], TASK)

    asyncio.run(backend.alabel(pairs[:batch], TASK))  # warm-up: loads the model
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        asyncio.run(run())
        rates.append(len(pairs) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", help="local CLIP/SigLIP checkpoint (default: a tiny random CLIP)")
    parser.add_argument("--hf", help="local VLM checkpoint (default: a tiny random LLaVA)")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224, help="frame height and width in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--analysis-tokens", type=int, default=32, help="stage-1 new tokens (hf)")
    parser.add_argument("--answer-tokens", type=int, default=4, help="stage-2 new tokens (hf)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2 * args.pairs, args.size, args.size, 3), dtype=np.uint8)
    pairs = [FramePair(frames[2 * i], frames[2 * i + 1]) for i in range(args.pairs)]
    batches = [int(b) for b in args.batches.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        from rlvlmf.testing.tiny_models import build_tiny_clip, build_tiny_llava

        clip_path = args.clip or str(build_tiny_clip(Path(tmp) / "clip"))
        hf_path = args.hf or str(build_tiny_llava(Path(tmp) / "llava"))
        print(f"# {args.pairs} pairs of {args.size}x{args.size} frames, device {args.device}, "
              f"{args.threads} torch thread(s), median of {args.repeats}; torch {torch.__version__}")
        print(f"# hf: two-stage, greedy, {args.analysis_tokens} + {args.answer_tokens} new tokens per pair")
        print("| backend | model | batch | pairs/s |")
        print("|---|---|---|---|")
        for family, path in (("clip", clip_path), ("hf", hf_path)):
            label = "tiny random" if (family == "clip" and not args.clip) or (family == "hf" and not args.hf) else path
            for batch in batches:
                options = {"device": args.device, "max_batch": str(batch)}
                if family == "hf":
                    options |= {"analysis_max_tokens": str(args.analysis_tokens), "answer_max_tokens": str(args.answer_tokens)}
                backend = make_backend(f"{family}:{path}", **options)
                rate = pairs_per_second(backend, pairs, batch, args.repeats)
                print(f"| {family} | {label} | {batch} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
