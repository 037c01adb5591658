"""Where a trained Pendulum policy ends from each evaluation start: swung up, or held below.

Run: .venv/bin/python benchmarks/pendulum_starts.py RUN_DIR [RUN_DIR ...] [--seed 0] [--episodes 10]

Replays the run's final deterministic policy from the evaluation's own starts (episode ``i``
resets with ``evaluation_seed(seed) + i``, as ``Trainer._evaluate``) and prints, per start, the
initial angle from upright, the return, the highest cos(angle) reached, the mean |action| and
the final angle and angular speed: a policy that holds the pendulum still below horizontal
with near-full torque has found the pull-straight-up local optimum instead of a swing-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlvlmf.training.evaluate import evaluation_seed  # noqa: E402
from rlvlmf.training.trained_agent import load_agent  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="the runs' training seed (sets the evaluation starts)")
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    for run in args.runs:
        policy = load_agent(run)
        env = policy.make_env()
        print(run.name)
        for i in range(args.episodes):
            obs, _ = env.reset(seed=evaluation_seed(args.seed) + i)
            start = np.degrees(np.arctan2(obs[1], obs[0]))
            total, best_cos, actions = 0.0, -1.0, []
            for _ in range(200):
                action = policy(obs)
                actions.append(float(np.abs(action).mean()))
                obs, reward, terminated, truncated, _ = env.step(action)
                total, best_cos = total + float(reward), max(best_cos, float(obs[0]))
                if terminated or truncated:
                    break
            end = np.degrees(np.arctan2(obs[1], obs[0]))
            print(f"  start {i}: {start:7.1f} deg, return {total:8.1f}, max cos {best_cos:5.2f}, "
                  f"mean |a| {np.mean(actions):.2f}, final {end:7.1f} deg at {abs(float(obs[2])):.2f} rad/s")
        env.close()


if __name__ == "__main__":
    main()
