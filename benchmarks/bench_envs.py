"""How fast the env layer steps and renders on this machine.

For each env: physics steps/s without rendering, then frames/s of ``render()`` alone and of
``step()`` + ``render()`` at 84x84 and 224x224 (the preset's camera, no crop). Each figure is the
median of several timed repeats after a warm-up.

    .venv/bin/python benchmarks/bench_envs.py [--envs cartpole-swingup,drawer-open] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from rlvlmf.envs import get_preset, make_env


def _rate(work: Callable[[], None], count: int, repeats: int) -> float:
    """Median over ``repeats`` of ``count`` calls per second (after one warm-up call)."""
    work()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            work()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def _stepper(env: gym.Env, rng: np.random.Generator, render: bool) -> Callable[[], None]:
    low, high = env.action_space.low, env.action_space.high

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        if terminated or truncated:
            env.reset()
        if render:
            env.render()

    return step


def bench(preset_name: str, sizes: list[int], repeats: int, steps: int, frames: int) -> list[str]:
    """Table rows for one preset."""
    preset = get_preset(preset_name)
    rng = np.random.default_rng(0)
    rows = []
    env = make_env(preset.spec, width=sizes[0], height=sizes[0], camera=preset.camera)
    env.reset(seed=0)
    rows.append(f"{preset_name:<18} {'-':>9} {_rate(_stepper(env, rng, False), steps, repeats):>12.0f}")
    env.close()
    for size in sizes:
        env = make_env(preset.spec, width=size, height=size, camera=preset.camera)
        env.reset(seed=0)
        render_only = _rate(env.render, frames, repeats)
        with_step = _rate(_stepper(env, rng, True), frames, repeats)
        env.close()
        rows.append(
            f"{preset_name:<18} {f'{size}x{size}':>9} {'':>12} {render_only:>12.1f} {with_step:>14.1f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="cartpole-swingup,drawer-open")
    parser.add_argument("--sizes", default="84,224")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="steps per timed repeat")
    parser.add_argument("--frames", type=int, default=100, help="frames per timed repeat")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for name in args.envs.split(","):
        rows += bench(name.strip(), sizes, args.repeats, args.steps, args.frames)
    print(f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}  cpus={os.cpu_count()}  median of {args.repeats}")
    print(f"{'env':<18} {'render':>9} {'steps/s':>12} {'render fps':>12} {'step+render':>14}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
