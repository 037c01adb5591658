"""Labeler throughput against a local OpenAI-compatible server that answers after a fixed delay.

For each concurrency (``max_in_flight``) it labels ``pairs_per_slot * concurrency`` fresh
pairs through ``Labeler`` + a fresh temporary ``QueryStore`` + the ``openai`` backend, and
prints labeled pairs per second next to the target ``0.8 * concurrency / pair_latency``,
where ``pair_latency = stages * delay`` (the two-stage protocol makes two sequential
requests per pair). The server (rlvlmf/testing/openai_server.py) runs in its own process so it
does not share the client's interpreter lock.

    .venv/bin/python benchmarks/bench_labeler.py --delay 0.2 --concurrency 1 4 16 64
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlvlmf.envs.task import TaskDescription  # noqa: E402
from rlvlmf.feedback.base import Backend, FramePair  # noqa: E402
from rlvlmf.feedback.labeler import Labeler, LabelerConfig  # noqa: E402
from rlvlmf.feedback.registry import make_backend  # noqa: E402
from rlvlmf.feedback.store import QueryStore  # noqa: E402

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))


def serve(delay_s: float, conn: multiprocessing.connection.Connection, rule_vlm: bool = False) -> None:
    """Child process: run the fake server until the parent says stop.

    ``rule_vlm``: answer training frames by ``rlvlmf.testing.rule_vlm.RuleVLM``'s rule (the
    brighter frame wins) instead of the server's canned answers.
    """
    from rlvlmf.testing.openai_server import FakeOpenAIServer, default_responder
    from rlvlmf.testing.rule_vlm import RuleVLM

    with FakeOpenAIServer(delay_s=delay_s, responder=RuleVLM() if rule_vlm else default_responder) as server:
        conn.send(server.url)
        conn.recv()


def render_like_frame(rng: np.random.Generator, size: int) -> np.ndarray:
    """A frame that compresses like a rendered scene: smooth background, a few flat objects."""
    y, x = np.mgrid[0:size, 0:size]
    frame = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 96)], axis=-1).astype(np.uint8)
    for _ in range(3):
        top, left = rng.integers(0, size - size // 4, 2)
        frame[top : top + size // 4, left : left + size // 5] = rng.integers(0, 256, 3, dtype=np.uint8)
    return frame


def make_bench_backend(url: str | None, mode: str, pair_latency: float) -> Backend:
    """The openai backend at ``url``, or (``url=None``) an in-process one that just waits."""
    if url is not None:
        return make_backend(f"openai:fake-vlm@{url}", mode=mode)
    from rlvlmf.testing.backends import CountingBackend

    return CountingBackend(delay_s=pair_latency)


def run_one(
    url: str | None, concurrency: int, n_pairs: int, mode: str, size: int, pair_latency: float, rng: np.random.Generator
) -> tuple[float, float, float, int]:
    """Label ``n_pairs`` new pairs; returns (pairs/s, mean pair latency, client CPU s per pair, failures)."""
    pairs = [FramePair(render_like_frame(rng, size), render_like_frame(rng, size)) for _ in range(n_pairs)]
    backend = make_bench_backend(url, mode, pair_latency)
    config = LabelerConfig(max_in_flight=concurrency, progress=False)
    with (
        tempfile.TemporaryDirectory() as store_dir,
        Labeler(backend, TASK, QueryStore(store_dir), config, run_id="bench") as labeler,
    ):
        start, cpu_start = time.perf_counter(), time.process_time()
        results = labeler.label(pairs)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    latency = statistics.mean(r.answer.latency_s for r in results if not r.failed) if url is not None else float("nan")
    return n_pairs / elapsed, latency, cpu / n_pairs, sum(r.failed for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.2, help="server delay per request, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--pairs-per-slot", type=int, default=4, help="pairs per unit of concurrency per run")
    parser.add_argument("--mode", choices=["two-stage", "one-stage"], default="two-stage")
    parser.add_argument("--size", type=int, default=200, help="frame side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--in-process", action="store_true", help="no HTTP: a backend that waits stages*delay, to time labeler + store alone"
    )
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.delay, child), daemon=True)
    server.start()
    url = None if args.in_process else parent.recv()
    rng = np.random.default_rng(args.seed)
    stages = 2 if args.mode == "two-stage" else 1
    pair_latency = stages * args.delay
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    try:
        run_one(url, 2, 4, args.mode, args.size, pair_latency, rng)  # warm up imports and connections
        where = "in-process backend (no HTTP)" if url is None else "fake OpenAI server in its own process"
        print(f"{where}: delay {args.delay * 1000:.0f} ms/request, {args.mode} ({stages} requests/pair), "
              f"{args.size}x{args.size} frames")
        print(f"{'concurrency':>11} {'pairs':>6} {'pairs/s':>9} {'target':>8} {'ideal':>6} {'mean pair latency':>18} "
              f"{'client CPU/pair':>16} {'failed':>6}")
        for concurrency in args.concurrency:
            n_pairs = args.pairs_per_slot * concurrency
            rate, latency, cpu, failed = run_one(url, concurrency, n_pairs, args.mode, args.size, pair_latency, rng)
            shown_latency = "-" if np.isnan(latency) else f"{latency * 1000:.0f} ms"
            # With no server delay there is no target: the run measures the client's CPU ceiling.
            target = 0.8 * concurrency / pair_latency if pair_latency > 0 else float("nan")
            ideal = rate / (target / 0.8) if pair_latency > 0 else float("nan")
            print(f"{concurrency:>11} {n_pairs:>6} {rate:>9.2f} {target:>8.2f} {ideal:>6.2f} {shown_latency:>18} "
                  f"{cpu * 1000:>13.1f} ms {failed:>6}")
    finally:
        parent.send("stop")
        server.join(timeout=10)


if __name__ == "__main__":
    main()
