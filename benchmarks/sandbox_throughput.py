"""Measure sandboxed reward-code throughput: start-up time and calls/s on (N, obs_dim) batches.

Usage: python benchmarks/sandbox_throughput.py [--batch 1000] [--obs-dim 39] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlvlmf.codegen.sandbox import Sandbox, SandboxLimits

CODE = """
import numpy as np

def subgoal_1(obs):
    return np.linalg.norm(obs[:, 0:3] - obs[:, 4:7], axis=1) < 0.05

def goal(obs):
    return np.exp(-np.linalg.norm(obs[:, 4:7] - obs[:, -3:], axis=1))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--obs-dim", type=int, default=39)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    obs = np.random.default_rng(0).normal(size=(args.batch, args.obs_dim))
    t0 = time.perf_counter()
    with Sandbox(CODE, ["subgoal_1", "goal"], SandboxLimits(timeout_s=5.0)) as box:
        startup = time.perf_counter() - t0
        calls = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            box.call("goal", obs)
            calls += 1
        elapsed = time.perf_counter() - t0
    print(f"start-up (spawn + numpy import + load): {startup * 1000:.0f} ms")
    print(f"batch {args.batch} x {args.obs_dim}: {calls / elapsed:.0f} calls/s, {calls * args.batch / elapsed:.0f} obs/s")


if __name__ == "__main__":
    main()
