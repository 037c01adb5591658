"""Which image reward encoder learns best per second of compute? (issue 12, item 1)

Run: .venv/bin/python benchmarks/bench_reward_encoders.py [--seeds 3] [--epochs 15]

The RL-VLM-F encoder (kernels 5/3/3/3, strides 3/2/2/2, channels 16/32/64/128, no padding)
ends in one 1x1 cell at 64 px whose receptive field covers pixels 0-46 only. Candidates:

- ``old-64``: the unpadded stack at 64 px, flattened (the blind baseline);
- ``pad-flat-64``: "same"-style padding (kernel // 2) on every conv, 3x3x128 cells flattened;
- ``pad-gap-64``: the same padded convs, then a global average over the cells (128 features);
- ``nopad-71`` / ``nopad-47``: the unpadded stack at a frame size it tiles exactly
  (71 -> 2x2 cells, 47 -> 1x1), i.e. "another frame size";
- ``pad-flat-48``: the padded stack at 48 px (2x2 cells), to tell the frame size's effect from
  the padding's.

Each variant is one reward net (conv encoder -> linear -> tanh, as the default config) fit
with the Bradley-Terry loss (Adam 3e-4, minibatch 64: the default config) on the same pairs
of two tasks (``rlvlmf.testing.preference_tasks``): ``corner`` (signal only in the bottom-right
corner) and ``cartpole`` (rendered cartpole-swingup frames, the suite's reward). Frames are
made at 64 px and resized for the other sizes. It prints the held-out pairwise accuracy
against the ground-truth reward (all pairs of held-out frames) after each epoch budget and
the fit's CPU seconds (process time, so load from other processes does not count), the
median over seeds. torch runs on one thread.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from rlvlmf.envs.frames import resize_frame
from rlvlmf.reward.config import CONV_KERNELS, CONV_STRIDES
from rlvlmf.reward.losses import bradley_terry_loss
from rlvlmf.reward.nets import preprocess_frames
from rlvlmf.testing.preference_tasks import cartpole_frames, corner_square_frames, frame_pairs, pairwise_accuracy

CHANNELS = (16, 32, 64, 128)
VARIANTS: dict[str, tuple[int, bool, bool]] = {  # name: (frame size, padded, global average pool)
    "old-64": (64, False, False),
    "pad-flat-64": (64, True, False),
    "pad-gap-64": (64, True, True),
    "nopad-71": (71, False, False),
    "nopad-47": (47, False, False),
    "pad-flat-48": (48, True, False),
}


def build(size: int, padded: bool, pooled: bool) -> nn.Module:
    """One reward net: the conv stack, optionally padded and pooled, then linear -> tanh."""
    layers: list[nn.Module] = []
    in_channels = 3
    for out_channels, kernel, stride in zip(CHANNELS, CONV_KERNELS, CONV_STRIDES):
        layers += [nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2 if padded else 0), nn.LeakyReLU()]
        in_channels = out_channels
    layers.append(nn.AdaptiveAvgPool2d(1) if pooled else nn.Identity())
    layers.append(nn.Flatten())
    encoder = nn.Sequential(*layers)
    with torch.no_grad():
        features = encoder(torch.zeros(1, 3, size, size)).shape[1]
    return nn.Sequential(encoder, nn.Linear(features, 1), nn.Tanh(), nn.Flatten(0))


def fit(
    net: nn.Module, train: tuple, heldout: tuple[np.ndarray, np.ndarray], epochs: int, seed: int
) -> list[tuple[float, float]]:
    """``(seconds so far, held-out accuracy)`` after each epoch."""
    first, second, labels = train
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-4)
    a = preprocess_frames(torch.from_numpy(first.frames[:, 0]))
    b = preprocess_frames(torch.from_numpy(second.frames[:, 0]))
    y = torch.from_numpy(labels)
    test_images = preprocess_frames(torch.from_numpy(heldout[0]))
    curve, seconds = [], 0.0
    for _ in range(epochs):
        start = time.process_time()  # CPU seconds: other processes on shared cores do not count
        net.train()
        order = torch.from_numpy(rng.permutation(len(labels)))
        for chunk in order.split(64):
            returns = net(torch.cat([a[chunk], b[chunk]])).view(2, -1)
            loss = bradley_terry_loss(returns[0], returns[1], y[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.process_time() - start
        net.eval()
        with torch.no_grad():
            predicted = net(test_images).numpy()
        curve.append((seconds, pairwise_accuracy(predicted, heldout[1])))
    return curve


def task_frames(task: str, seed: int, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """64 px train frames, rewards, held-out frames, rewards (held-out from other episodes)."""
    if task == "corner":
        rng = np.random.default_rng(seed)
        frames, rewards = corner_square_frames(rng, n_train + n_test)
        return frames[:n_train], rewards[:n_train], frames[n_train:], rewards[n_train:]
    train, train_r = cartpole_frames(n_train, seed=seed)
    test, test_r = cartpole_frames(n_test, seed=10_000 + seed, episode_steps=n_test // 2)
    return train, train_r, test, test_r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="epochs per fit (accuracy is printed at 1/3, 2/3 and all)")
    parser.add_argument("--pairs", type=int, default=1000, help="labelled training pairs")
    parser.add_argument("--tasks", default="corner,cartpole")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; torch threads 1; {args.pairs} pairs, {args.epochs} epochs, "
          f"{args.seeds} seeds (median)")
    checkpoints = sorted({max(1, args.epochs // 3), max(1, 2 * args.epochs // 3), args.epochs})
    header = " ".join(f"{'acc@' + str(e) + 'ep':>9} {'s@' + str(e) + 'ep':>7}" for e in checkpoints)
    for task in args.tasks.split(","):
        print(f"\ntask {task}\n{'variant':<12} {header}")
        data = [task_frames(task, seed, n_train=1500, n_test=300) for seed in range(args.seeds)]
        for name in args.variants.split(","):
            size, padded, pooled = VARIANTS[name]
            curves = []
            for seed, (train, train_r, test, test_r) in enumerate(data):
                if size != 64:
                    train, test = (np.stack([resize_frame(f, size) for f in x]) for x in (train, test))
                rng = np.random.default_rng(seed)
                pairs = frame_pairs(train, train_r, args.pairs, rng)
                torch.manual_seed(seed)
                curves.append(fit(build(size, padded, pooled), pairs, (test, test_r), args.epochs, seed))
            cells = []
            for e in checkpoints:
                seconds = np.median([c[e - 1][0] for c in curves])
                accuracy = np.median([c[e - 1][1] for c in curves])
                cells.append(f"{accuracy:>9.3f} {seconds:>7.1f}")
            print(f"{name:<12} {' '.join(cells)}", flush=True)


if __name__ == "__main__":
    main()
