"""Load client: label chunks of fresh pairs against a server, reporting rate and peak memory.

Run as a child process so its peak RSS (``VmHWM``) is the labeler's own, not the server's
or the test runner's::

    python -m rlvlmf.testing.load_client URL --chunks 4 --chunk-size 1000 --in-flight 256

Prints one JSON line per chunk: pairs labeled so far, failures, pairs/s of the chunk, and
``VmHWM``/``VmRSS`` in MiB after it. Each chunk's pairs are made just before it is labeled
and dropped after, as a training run does between rounds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.base import FramePair
from rlvlmf.feedback.labeler import Labeler, LabelerConfig
from rlvlmf.feedback.registry import make_backend
from rlvlmf.feedback.store import QueryStore

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))


def memory_mib() -> dict[str, float]:
    """``VmHWM`` (peak resident) and ``VmRSS`` of this process, in MiB (Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    backend = make_backend(f"openai:fake-vlm@{args.url}", mode="one-stage", timeout_s=60)
    config = LabelerConfig(max_in_flight=args.in_flight, max_retries=2, backoff_base_s=0.05, progress=False)
    with tempfile.TemporaryDirectory() as store_dir, QueryStore(store_dir) as store, \
            Labeler(backend, TASK, store, config, run_id="load") as labeler:
        done = 0
        print(json.dumps({"pairs": 0, **memory_mib()}), flush=True)
        for _ in range(args.chunks):
            shape = (args.chunk_size, args.size, args.size, 3)
            firsts, seconds = rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)
            pairs = [FramePair(a, b) for a, b in zip(firsts, seconds)]
            start = time.perf_counter()
            results = labeler.label(pairs)
            elapsed = time.perf_counter() - start
            done += len(pairs)
            failed = sum(r.failed for r in results)
            del pairs, results, firsts, seconds
            print(json.dumps({"pairs": done, "failed": failed, "pairs_per_s": args.chunk_size / elapsed, **memory_mib()}),
                  flush=True)
        print(json.dumps({"rows": len(store)}), flush=True)


if __name__ == "__main__":
    main()
