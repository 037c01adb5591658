"""Timings of the learning core on this machine's CPU: SAC updates, reward fitting, relabelling.

Run: .venv/bin/python benchmarks/bench_learning.py [--quick]

Prints one line per measurement. Every number is measured here; load from other processes
on the same cores changes them, so the script also prints the load average.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from rlvlmf.agents.batch import TransitionBatch
from rlvlmf.agents.sac import SAC, SACConfig
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.training.buffer import ReplayBuffer

OBS_DIM, ACTION_DIM = 24, 6  # dm_control walker-walk


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_sac(quick: bool) -> None:
    settings = [
        ((1024, 1024), 1024, "float32"), ((1024, 1024), 1024, "bfloat16"),
        ((256, 256), 256, "float32"), ((256, 256, 256), 512, "float32"),
    ]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for hidden, batch_size, dtype in settings:
            agent = SAC(OBS_DIM, ACTION_DIM, SACConfig(hidden_sizes=hidden, batch_size=batch_size, matmul_dtype=dtype))
            batch = TransitionBatch(
                torch.randn(batch_size, OBS_DIM), torch.rand(batch_size, ACTION_DIM) * 2 - 1,
                torch.randn(batch_size, 1), torch.randn(batch_size, OBS_DIM), torch.ones(batch_size, 1),
            )
            repeats = 5 if quick else (15 if batch_size >= 1024 else 50)
            seconds = timed(partial(agent.update, batch), repeats)
            print(f"sac update  hidden={'x'.join(map(str, hidden)):<11} batch={batch_size:<5} {dtype:<8} threads={threads}: "
                  f"{seconds * 1e3:8.1f} ms/update  ({1 / seconds:6.1f} updates/s)")


class ReferenceStyleSAC:
    """A PEBBLE-style update written the common way, as a baseline for ``SAC.update``.

    Two separate Q MLPs, a ``torch.distributions`` squashed Gaussian, default Adam, and the
    critic's weight gradients computed (then discarded) during the actor step.
    """

    def __init__(self, hidden: tuple[int, ...]) -> None:
        from torch import distributions as D
        from torch import nn

        def mlp(i: int, o: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for h in hidden:
                layers += [nn.Linear(i, h), nn.ReLU()]
                i = h
            return nn.Sequential(*layers, nn.Linear(i, o))

        self.D = D
        self.actor, self.q1, self.q2 = mlp(OBS_DIM, 2 * ACTION_DIM), mlp(OBS_DIM + ACTION_DIM, 1), mlp(OBS_DIM + ACTION_DIM, 1)
        self.t1, self.t2 = mlp(OBS_DIM + ACTION_DIM, 1), mlp(OBS_DIM + ACTION_DIM, 1)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.opt_a = torch.optim.Adam(self.actor.parameters(), 5e-4)
        self.opt_c = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], 5e-4)
        self.opt_t = torch.optim.Adam([self.log_alpha], 1e-4)
        self.step = 0

    def dist(self, obs: torch.Tensor):
        mu, log_std = self.actor(obs).chunk(2, -1)
        log_std = -5 + 3.5 * (torch.tanh(log_std) + 1)
        return self.D.TransformedDistribution(self.D.Normal(mu, log_std.exp()), [self.D.TanhTransform(cache_size=1)])

    def update(self, b: TransitionBatch) -> None:
        d = self.dist(b.next_obs)
        a = d.rsample()
        lp = d.log_prob(a).sum(-1, keepdim=True)
        x = torch.cat([b.next_obs, a], -1)
        soft_value = torch.min(self.t1(x), self.t2(x)) - self.log_alpha.exp().detach() * lp
        target = (b.reward + b.not_done * 0.99 * soft_value).detach()
        x = torch.cat([b.obs, b.action], -1)
        loss = torch.nn.functional.mse_loss(self.q1(x), target) + torch.nn.functional.mse_loss(self.q2(x), target)
        self.opt_c.zero_grad()
        loss.backward()
        self.opt_c.step()
        d = self.dist(b.obs)
        a = d.rsample()
        lp = d.log_prob(a).sum(-1, keepdim=True)
        x = torch.cat([b.obs, a], -1)
        actor_loss = (self.log_alpha.exp().detach() * lp - torch.min(self.q1(x), self.q2(x))).mean()
        self.opt_a.zero_grad()
        actor_loss.backward()
        self.opt_a.step()
        alpha_loss = (self.log_alpha.exp() * (-lp - (-ACTION_DIM)).detach()).mean()
        self.opt_t.zero_grad()
        alpha_loss.backward()
        self.opt_t.step()
        if self.step % 2 == 0:
            with torch.no_grad():
                for t, s in zip([*self.t1.parameters(), *self.t2.parameters()], [*self.q1.parameters(), *self.q2.parameters()]):
                    t.mul_(0.995).add_(s, alpha=0.005)
        self.step += 1


def bench_sac_vs_reference(quick: bool) -> None:
    """Our update against the common way, interleaved so that load from others hits both."""
    torch.set_num_threads(1)
    for hidden, batch_size in (((1024, 1024), 1024), ((256, 256), 256)):
        ours = SAC(OBS_DIM, ACTION_DIM, SACConfig(hidden_sizes=hidden, batch_size=batch_size))
        reference = ReferenceStyleSAC(hidden)
        batch = TransitionBatch(
            torch.randn(batch_size, OBS_DIM), torch.rand(batch_size, ACTION_DIM) * 2 - 1,
            torch.randn(batch_size, 1), torch.randn(batch_size, OBS_DIM), torch.ones(batch_size, 1),
        )
        times: dict[str, list[float]] = {"ours": [], "reference-style": []}
        for _ in range(3 if quick else 8):
            repeats = 2 if batch_size >= 1024 else 10
            times["ours"].append(timed(partial(ours.update, batch), repeats, warmup=1))
            times["reference-style"].append(timed(partial(reference.update, batch), repeats, warmup=1))
        a, b = np.median(times["ours"]), np.median(times["reference-style"])
        print(f"sac update vs reference-style  hidden={'x'.join(map(str, hidden))} batch={batch_size} threads=1: "
              f"ours {a * 1e3:.1f} ms, reference-style {b * 1e3:.1f} ms ({b / a:.2f}x)")


def square_frames(positions: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy frames with a bright square at ``positions`` (its x coordinate is the reward)."""
    frames = rng.integers(0, 60, size=(len(positions), size, size, 3), dtype=np.uint8)
    for i, x in enumerate(positions):
        frames[i, size // 2 - 6:size // 2 + 6, x:x + 12] = 255
    return frames


def bench_reward_fit(quick: bool) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    size, labels_count = 64, 150
    for epochs, dtype in ((10, "float32"), (50, "float32"), (10, "bfloat16"), (50, "bfloat16")):
        config = RewardModelConfig(input="image", frame_size=size, max_epochs=epochs, early_stop_acc=1.0, compute_dtype=dtype)
        dataset = PreferenceDataset(1000)
        a, b = rng.integers(0, size - 12, labels_count), rng.integers(0, size - 12, labels_count)
        dataset.add(
            RewardInputs(square_frames(a, size, rng)[:, None], None), RewardInputs(square_frames(b, size, rng)[:, None], None),
            (b > a).astype(np.int64), rng, gt_labels=(b > a).astype(np.int64),
        )
        ensemble = RewardEnsemble(config)
        report = ensemble.fit(dataset, rng)
        print(f"image reward fit 64x64 ensemble=3 labels={labels_count} {dtype:<8} max_epochs={epochs}: {report.seconds:6.2f} s "
              f"({report.epochs} epochs, {report.seconds / report.epochs * 1e3:.0f} ms/epoch, "
              f"train acc {report.train_acc:.2f}, gt acc {report.gt_acc:.2f})")
        if quick:
            break


def bench_relabel(quick: bool) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    steps = 5000 if quick else 20000
    buffer = ReplayBuffer(steps, OBS_DIM, ACTION_DIM, frame_size=64)
    buffer.frames[:] = rng.integers(0, 255, size=buffer.frames.shape, dtype=np.uint8)
    buffer.obs[:] = rng.normal(size=buffer.obs.shape)
    buffer.total_added = steps
    for dtype in ("float32", "bfloat16"):
        image = RewardEnsemble(RewardModelConfig(input="image", frame_size=64, compute_dtype=dtype))
        for batch_size in (64, 256, 1024):
            seconds = timed(partial(buffer.relabel, partial(image.predict, batch_size=batch_size), None), 1, warmup=0)
            print(f"relabel image reward 64x64 ensemble=3 {dtype:<8} predict_batch={batch_size:<5}: "
                  f"{steps / seconds:6.0f} frames/s "
                  f"({steps} frames in {seconds:.2f} s; 100k frames ~ {100_000 * seconds / steps:.0f} s)")
    state = RewardEnsemble(RewardModelConfig(input="state", state_dim=OBS_DIM + ACTION_DIM))
    seconds = timed(lambda: buffer.relabel(state.predict, "obs_action"), 1, warmup=0)
    print(f"relabel state reward 3x256 ensemble=3: {steps / seconds:8.0f} transitions/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--only", choices=("sac", "sac-vs-reference", "fit", "relabel"), help="run one group")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    groups = {"sac": bench_sac, "sac-vs-reference": bench_sac_vs_reference, "fit": bench_reward_fit, "relabel": bench_relabel}
    for name, bench in groups.items():
        if args.only in (None, name):
            bench(args.quick)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
