"""Peak memory of an image-reward training run, measured, with the analytical estimate beside it.

Run: .venv/bin/python benchmarks/bench_memory.py [--preset drawer-open] [--steps 100000]
     [--max-seconds 900] [--set key=value ...]

Trains ``--preset`` through the real ``Trainer`` with the learned image reward (the default
for the preset: 64x64 frames, ensemble of 3) and the scripted teacher, sampling the process's
resident memory (``VmRSS``) and its peak (``VmHWM``, from /proc/self/status) every
``--sample-every`` steps. The replay buffer is sized for ``--steps`` (as a real run of that
length) but its pages only become resident as they are written, so memory grows with the
steps done. The defaults make the run fast where speed does not change memory: one SAC
update per 1000 steps with 64x64 MLPs, one one-episode evaluation at the end.

If the run reaches ``--max-seconds`` first it stops there, and the peak at ``--steps`` is
extrapolated from the measured growth per step over the last half of the samples (the run
is then mostly frames being written, one per step); the output says which it is.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_checkpoints import folder_bytes  # this folder is on sys.path when a benchmark runs

from rlvlmf.training.buffer import bytes_per_transition
from rlvlmf.training.builder import build_config
from rlvlmf.training.loop import Trainer

FAST = ["update_every=1000", "sac.hidden_sizes=64,64", "eval_every=100000", "eval_episodes=1", "eval_video=false",
        "labeler.progress=false"]


class _TimeUp(Exception):
    pass


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="drawer-open")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"config overrides after the fast defaults ({' '.join(FAST)})")
    args = parser.parse_args()
    config = build_config(args.preset, [*FAST, *args.overrides], steps=args.steps)
    print(f"load average {os.getloadavg()[0]:.1f}; preset {args.preset}, steps {args.steps}, "
          f"overrides: {' '.join([*FAST, *args.overrides])}")
    print(f"schedule: seed {config.seed_steps}, unsup {config.unsup_steps}, a round every {config.num_interact} steps of "
          f"{config.reward_batch} queries; reward input {config.reward_model.input} at {config.reward_model.frame_size}px, "
          f"ensemble {config.reward_model.ensemble_size}; query pool {config.query_pool_size}")

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        trainer = Trainer(config, run_dir, store_dir=Path(tmp) / "queries", export_dir=None, progress=False)
        obs_dim, action_dim = trainer.buffer.obs_dim, trainer.buffer.action_dim
        per_step = bytes_per_transition(obs_dim, action_dim, trainer.buffer.frame_size)
        samples: list[tuple[int, int, int]] = []  # (step, VmRSS KiB, VmHWM KiB)
        started = time.perf_counter()
        env_step = trainer.env.step

        def sampled_step(action: Any) -> Any:
            step = trainer.counters.step
            if step % args.sample_every == 0:
                samples.append((step, proc_status_kib("VmRSS"), proc_status_kib("VmHWM")))
                if time.perf_counter() - started > args.max_seconds:
                    raise _TimeUp
            return env_step(action)

        trainer.env.step = sampled_step
        finished = True
        try:
            trainer.run()
        except _TimeUp:
            finished = False
        finally:
            samples.append((trainer.counters.step, proc_status_kib("VmRSS"), proc_status_kib("VmHWM")))
            pool_bytes = 0 if trainer.pool is None or trainer.pool.frames is None else trainer.pool.frames.nbytes
            prefs = trainer.preferences
            counters = trainer.counters
            trainer.close()
            run_bytes, store_bytes = folder_bytes(run_dir), folder_bytes(Path(tmp) / "queries")
        elapsed = time.perf_counter() - started

    done, _, hwm = samples[-1]
    print(f"ran {done} steps in {elapsed:.0f} s ({done / elapsed:.1f} steps/s), {counters.rounds} feedback rounds, "
          f"{counters.labels} labels; {'finished' if finished else 'stopped at the time limit'}")
    print(f"bytes per transition (rlvlmf.training.buffer.bytes_per_transition({obs_dim}, {action_dim}, "
          f"{trainer.buffer.frame_size})): {per_step:,}")
    buffer_bytes = args.steps * per_step
    print(f"analytical: replay buffer {args.steps:,} x {per_step:,} B = {buffer_bytes / 2**30:.2f} GiB; query pool "
          f"{pool_bytes / 2**20:.0f} MiB; preference data {0 if prefs is None else len(prefs)} labels so far")
    for step, rss, peak in samples[:: max(1, len(samples) // 12)] + samples[-1:]:
        print(f"  step {step:>7}: VmRSS {rss / 2**20:6.2f} GiB, VmHWM {peak / 2**20:6.2f} GiB")
    print(f"measured peak RSS (VmHWM) at step {done}: {hwm / 2**20:.2f} GiB")
    print(f"disk at the end: run folder (checkpoints, metrics, videos) {run_bytes / 2**30:.2f} GiB; "
          f"query store {store_bytes / 2**20:.1f} MiB")
    if not finished and len(samples) >= 4:
        tail = np.array(samples[len(samples) // 2:], dtype=np.float64)
        slope_kib = np.polyfit(tail[:, 0], tail[:, 1], 1)[0]
        projected = hwm + slope_kib * (args.steps - done)
        print(f"measured growth over steps {int(tail[0, 0])}-{done}: {slope_kib * 1024:,.0f} B/step (buffer writes "
              f"{per_step:,} B/step); EXTRAPOLATED peak at {args.steps:,} steps: {projected / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
