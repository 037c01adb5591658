"""Throughput of the whole PEBBLE loop, and where its time goes.

Run: .venv/bin/python benchmarks/bench_train.py [--settings pebble small] [--window 2000] [--repeats 1] [--device auto]

Trains dmc walker-walk with a state-based reward ensemble (``reward_model.input=state``) and
the scripted teacher, through the real ``Trainer``, and reports env steps/s over a window of
``--window`` steps after random seeding and unsupervised pre-training, plus steps/s of the
pre-training phase itself. Feedback rounds happen every ``--num-interact`` steps, so the
window holds several reward fits and whole-buffer relabels.

Settings: ``pebble`` = PEBBLE's DMC SAC (2x1024 MLPs, batch 1024, lr 5e-4) with an ensemble
of 3; ``pebble-bf16`` = the same with bfloat16 matmuls (``sac.matmul_dtype``); ``small`` =
256x256 MLPs, batch 256.

Time shares come from wrapping the Trainer's collaborators on this instance (the library is
not changed for it): each stage's time is exclusive of the stages nested in it, and
"everything else" is the window's wall time minus all named stages (the loop itself,
buffer writes, bookkeeping). Evaluation and checkpoints are pushed outside the window
(``eval_every`` and ``checkpoint_every`` beyond it) and the progress bar is off unless
``--progress``. Every number is measured here; other processes on the same cores change them,
so the load average is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import rlvlmf.training.loop as train_module
from rlvlmf.training.builder import build_config
from rlvlmf.training.loop import Trainer
from rlvlmf.training.metrics import MetricsLogger
from rlvlmf.utils.device import resolve_device

SETTINGS: dict[str, list[str]] = {
    "pebble": ["sac.hidden_sizes=1024,1024", "sac.batch_size=1024", "sac.actor_lr=5e-4", "sac.critic_lr=5e-4"],
    "small": ["sac.hidden_sizes=256,256", "sac.batch_size=256"],
}
SETTINGS["pebble-bf16"] = [*SETTINGS["pebble"], "sac.matmul_dtype=bfloat16"]  # same sizes, bfloat16 matmuls
STAGES = ("physics", "rendering", "acting", "SAC update", "minibatch sampling", "k-NN entropy", "reward training",
          "reward inference", "query selection", "query labeling", "metrics")


class StageClock:
    """Exclusive wall time per named stage; a stage called inside another is subtracted from it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [child seconds] per open stage

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its time added to ``stage``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                child = self._stack.pop()[0]
                self.seconds[stage] += elapsed - child
                if self._stack:
                    self._stack[-1][0] += elapsed

        return timed

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)


def instrument(trainer: Trainer, clock: StageClock) -> None:
    """Route the trainer's heavy calls through ``clock`` (this instance, plus a few class hooks)."""
    trainer.env.step = clock.wrap("physics", trainer.env.step)
    trainer.env.render = clock.wrap("rendering", trainer.env.render)
    train_module.resize_frame = clock.wrap("rendering", train_module.resize_frame)
    trainer.agent.act = clock.wrap("acting", trainer.agent.act)
    trainer.agent.update = clock.wrap("SAC update", trainer.agent.update)
    for name in ("sample", "sample_slots", "batch"):
        setattr(trainer.buffer, name, clock.wrap("minibatch sampling", getattr(trainer.buffer, name)))
    if trainer.entropy is not None:
        trainer.entropy.reward = clock.wrap("k-NN entropy", trainer.entropy.reward)
    MetricsLogger.log = clock.wrap("metrics", MetricsLogger.log)
    trainer._sample_pairs = clock.wrap("query selection", trainer._sample_pairs)
    if trainer.labeler is not None:
        trainer.labeler.label = clock.wrap("query labeling", trainer.labeler.label)
    if trainer.ensemble is not None:
        trainer.ensemble.fit = clock.wrap("reward training", trainer.ensemble.fit)
        trainer.ensemble.predict = clock.wrap("reward inference", trainer.ensemble.predict)
        trainer.buffer.relabel = clock.wrap("reward inference", trainer.buffer.relabel)
        for name in ("predict_pending", "flush_rewards"):  # batched per-step prediction, where present
            if hasattr(trainer, name):
                setattr(trainer, name, clock.wrap("reward inference", getattr(trainer, name)))


def run_once(setting: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One measured run; returns steps/s of both phases and the window's stage seconds."""
    pretrain_end = args.seed_steps + args.unsup_steps
    window_end = pretrain_end + args.window
    overrides = [
        *SETTINGS[setting], "reward_model.input=state", "reward_model.ensemble_size=3",
        f"seed_steps={args.seed_steps}", f"unsup_steps={args.unsup_steps}", f"num_interact={args.num_interact}",
        f"reward_batch={args.reward_batch}", "max_feedback=100000", f"eval_every={10 * window_end}",
        f"checkpoint_every={10 * window_end}", "eval_video=false", f"threads={args.threads}", "labeler.progress=false",
        f"device={args.device}",
    ]
    config = build_config("walker-walk", overrides, steps=max(window_end + 1, args.capacity))
    run_dir = workdir / f"{setting}-{time.monotonic_ns()}"
    trainer = Trainer(config, run_dir, store_dir=run_dir / "queries", export_dir=None, progress=args.progress)
    clock = StageClock()
    instrument(trainer, clock)
    marks: dict[int, tuple[float, dict[str, float]]] = {}
    env_step = trainer.env.step

    def step_with_marks(action: Any) -> Any:
        if trainer.counters.step in (args.seed_steps, pretrain_end) and trainer.counters.step not in marks:
            marks[trainer.counters.step] = (time.perf_counter(), clock.snapshot(), time.process_time())
        return env_step(action)

    trainer.env.step = step_with_marks
    try:
        trainer.run(stop_after=window_end)
        end = (time.perf_counter(), clock.snapshot(), time.process_time())
        rounds, labels = trainer.counters.rounds, trainer.counters.labels
    finally:
        trainer.close()
    unsup_s = marks[pretrain_end][0] - marks[args.seed_steps][0]
    window_s = end[0] - marks[pretrain_end][0]
    window_cpu_s = end[2] - marks[pretrain_end][2]
    before = marks[pretrain_end][1]
    stages = {name: end[1].get(name, 0.0) - before.get(name, 0.0) for name in STAGES}
    stages["everything else"] = window_s - sum(stages.values())
    return {"unsup_sps": args.unsup_steps / unsup_s if args.unsup_steps else float("nan"),
            "window_sps": args.window / window_s, "window_cpu_sps": args.window / window_cpu_s, "window_s": window_s,
            "stages": stages, "rounds": rounds, "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["pebble", "small"])
    parser.add_argument("--seed-steps", type=int, default=1000)
    parser.add_argument("--unsup-steps", type=int, default=1000, help="PEBBLE's walker schedule has 9000")
    parser.add_argument("--window", type=int, default=2000, help="steps measured after pre-training")
    parser.add_argument("--num-interact", type=int, default=1000, help="steps between feedback rounds")
    parser.add_argument("--reward-batch", type=int, default=50, help="queries per round")
    parser.add_argument("--capacity", type=int, default=500_000, help="replay buffer size (config.steps)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (SAC and the reward ensemble)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--progress", action="store_true", help="show the tqdm bar, as a real run does")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads={args.threads}, device {device}{gpu}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"walker-walk, reward_model.input=state, ensemble 3, scripted teacher; seed {args.seed_steps} + unsup "
          f"{args.unsup_steps} steps, then a window of {args.window} steps with a feedback round every "
          f"{args.num_interact} steps ({args.reward_batch} queries each)")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            results = [run_once(setting, args, Path(tmp)) for _ in range(args.repeats)]
            median = statistics.median(r["window_sps"] for r in results)
            best = min(results, key=lambda r: abs(r["window_sps"] - median))
            each = ", ".join(f"{r['window_sps']:.2f}" for r in results)
            print(f"\n[{setting}: {' '.join(SETTINGS[setting])}]")
            print(f"  window: {median:.2f} env steps/s (median of {len(results)}: "
                  f"{each}); {best['rounds']} rounds, {best['labels']} labels in all")
            print(f"  window per CPU-second used by this process: {statistics.median(r['window_cpu_sps'] for r in results):.2f} "
                  "env steps (less sensitive to other processes on the cores; renderer threads count too)")
            print(f"  unsupervised pre-training: {statistics.median(r['unsup_sps'] for r in results):.2f} env steps/s")
            total = best["window_s"]
            for name, seconds in sorted(best["stages"].items(), key=lambda kv: -kv[1]):
                print(f"    {name:<20} {seconds:8.2f} s  {100 * seconds / total:5.1f}%")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
