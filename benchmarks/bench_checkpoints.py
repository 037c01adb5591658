"""What checkpoints cost: time and bytes per checkpoint against new data, and a run folder's size.

Run: .venv/bin/python benchmarks/bench_checkpoints.py scaling [--steps 50000 --every 10000]
     .venv/bin/python benchmarks/bench_checkpoints.py run-folder [--preset pendulum --steps 4000 --every 500] [--variant both]

``scaling`` fills a replay buffer with MetaWorld's sizes (39-dim states, 4-dim actions, 64x64
frames: 12,638 bytes a step) and a 256-frame query pool at 300x300, ``--every`` steps at a
time, relabels every other chunk (a feedback round: every learned reward changes) and takes a
checkpoint after each chunk. It prints, per checkpoint, the new transitions' bytes, the bytes
the checkpoint wrote and its seconds; then the same for writing the whole buffer each time (the
layout before segments: ``np.savez`` of the buffer's state, as ``arrays.npz`` held it).

``run-folder`` trains the same run twice through the real ``Trainer`` (scripted teacher, image
reward; pendulum's 200-step episodes, so checkpoints, taken at episode ends, can be ~500 steps
apart; one SAC update per 4 steps to keep it short on a CPU), once with a checkpoint every
``--every`` steps and once with only the final checkpoint, and prints both run folders' sizes,
their checkpoint folders' sizes and the seconds spent in checkpoints. ``--variant every|once``
runs one of the two (to run them as two processes). Every number is measured here;
other processes on the same disk and cores change the seconds, so the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlvlmf.training.buffer import ReplayBuffer, bytes_per_transition
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.query_pool import QueryPool
from rlvlmf.utils.atomic import atomic_open

OBS, ACT, FRAME, VLM_FRAME, POOL = 39, 4, 64, 300, 256


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def fill(buffer: ReplayBuffer, pool: QueryPool, rng: np.random.Generator, steps: int, frames: np.ndarray,
         entered: set[int]) -> None:
    """Add ``steps`` transitions (frames cycled from a random bank: content does not change the bytes).

    ``entered`` collects the pool positions that took a new frame.
    """
    for i in range(steps):
        in_pool = pool.offer(rng)
        if in_pool:
            entered.add(int(pool._pending))  # type: ignore[arg-type]  # benchmark bookkeeping only
        obs, next_obs = rng.standard_normal(OBS, np.float32), rng.standard_normal(OBS, np.float32)
        episode_end = (buffer.total_added + 1) % 500 == 0
        slot = buffer.add(obs, rng.uniform(-1, 1, ACT), 0.0, next_obs, False, episode_end, frames[i % len(frames)])
        if in_pool:
            pool.put(slot, np.full((VLM_FRAME, VLM_FRAME, 3), i % 251, np.uint8))


def scaling(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (64, FRAME, FRAME, 3), dtype=np.uint8)
    per_step = bytes_per_transition(OBS, ACT, FRAME)
    print(f"buffer: {OBS}-dim states, {ACT}-dim actions, {FRAME}x{FRAME} frames = {per_step} bytes/step; "
          f"pool {POOL} frames at {VLM_FRAME}x{VLM_FRAME}; a checkpoint every {args.every} steps, "
          "a relabel every other one")
    print(f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        buffer, pool = ReplayBuffer(args.steps, OBS, ACT, FRAME), QueryPool(POOL)
        manager = CheckpointManager(Path(tmp) / "segmented")
        legacy = Path(tmp) / "legacy.npz"
        print(f"{'steps':>8} {'new transitions MB':>18} {'new pool frames MB':>18} | "
              f"{'segments: MB written':>20} {'s':>6} | {'whole buffer: MB':>16} {'s':>6}")
        for chunk, step in enumerate(range(args.every, args.steps + 1, args.every)):
            entered: set[int] = set()
            fill(buffer, pool, rng, args.every, frames, entered)
            if chunk % 2:  # a feedback round: every learned reward changes, the pool starts over
                buffer.learned_reward[: len(buffer)] = rng.standard_normal(len(buffer)).astype(np.float32)
                pool.clear()
                entered.clear()
            before = files(manager.root)
            start = time.perf_counter()
            manager.save(step, arrays={}, torch_state={}, meta={}, preferences=None, buffer=buffer, pool=pool)
            seconds = time.perf_counter() - start
            # Bytes this checkpoint wrote: the files that are new (segments and its own folder).
            written = sum(size for path, size in files(manager.root).items() if path not in before)
            start = time.perf_counter()
            with atomic_open(legacy, "wb") as handle:
                np.savez(handle, **buffer.state_dict(), **pool.state_dict())
            legacy_seconds = time.perf_counter() - start
            print(f"{step:>8} {args.every * per_step / 1e6:>18.1f} {len(entered) * 3 * VLM_FRAME**2 / 1e6:>18.1f} | "
                  f"{written / 1e6:>20.1f} {seconds:>6.2f} | "
                  f"{legacy.stat().st_size / 1e6:>16.1f} {legacy_seconds:>6.2f}")
        print(f"segments folder at the end: {folder_bytes(manager.root) / 1e6:.1f} MB for {args.steps} steps "
              f"({args.steps * per_step / 1e6:.1f} MB of transitions); two whole-buffer checkpoints: "
              f"{2 * legacy.stat().st_size / 1e6:.1f} MB")
    print(f"load average {os.getloadavg()[0]:.1f}")


def run_folder(args: argparse.Namespace) -> None:
    from rlvlmf.training.builder import build_config
    from rlvlmf.training.loop import Trainer

    print(f"{args.preset}, {args.steps} steps, overrides {' '.join(args.set)}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        results = {}
        variants = (("every", args.every), ("once", 10 * args.steps))
        for label, every in [v for v in variants if args.variant in ("both", v[0])]:
            config = build_config(args.preset, [*args.set, f"checkpoint_every={every}", "checkpoint_minutes=0",
                                                "eval_video=false", "labeler.progress=false"], steps=args.steps)
            run_dir = Path(tmp) / label
            trainer = Trainer(config, run_dir, store_dir=Path(tmp) / f"q-{label}", export_dir=None, progress=False)
            save, spent = trainer.checkpoints.save, [0.0, 0]

            def timed(*a: Any, _save: Any = save, _spent: list[float] = spent, **k: Any) -> Any:
                start = time.perf_counter()
                try:
                    return _save(*a, **k)
                finally:
                    _spent[0] += time.perf_counter() - start
                    _spent[1] += 1

            trainer.checkpoints.save = timed  # type: ignore[method-assign]
            try:
                trainer.run()
            finally:
                trainer.close()
            results[label] = (folder_bytes(run_dir), folder_bytes(run_dir / "checkpoints"), spent[0], spent[1])
            print(f"  checkpoint_every={every}: run folder {results[label][0] / 1e6:.1f} MB, checkpoints/ "
                  f"{results[label][1] / 1e6:.1f} MB, {results[label][3]} checkpoints taking "
                  f"{results[label][2]:.1f} s in all")
        if len(results) == 2:
            ratio = results["every"][0] / results["once"][0]
            print(f"run folder with a checkpoint every {args.every} steps / with one checkpoint: {ratio:.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    s = sub.add_parser("scaling")
    s.add_argument("--steps", type=int, default=50_000)
    s.add_argument("--every", type=int, default=10_000)
    r = sub.add_parser("run-folder")
    r.add_argument("--preset", default="pendulum")
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--every", type=int, default=500)
    r.add_argument("--variant", choices=("both", "every", "once"), default="both")
    r.add_argument("--set", nargs="*", default=["num_interact=1000", "update_every=4", "eval_every=100000",
                                               "eval_episodes=2"])
    for p in (s, r):
        p.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    args = parser.parse_args()
    scaling(args) if args.part == "scaling" else run_folder(args)


if __name__ == "__main__":
    main()
