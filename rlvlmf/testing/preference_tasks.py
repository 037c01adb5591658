"""Preference tasks with a known reward, for tests and benchmarks of image reward models.

Each task returns frames and their ground-truth rewards; ``frame_pairs`` turns them into
labelled pairs and ``pairwise_accuracy`` scores a model's rewards against the truth.

- ``corner_square_frames``: noise frames whose reward is the brightness of a square in the
  bottom-right corner (rows/cols 50-63 of a 64 px frame), the band an unpadded
  5/3/3/3-stride-3/2/2/2 conv stack never sees at 64 px.
- ``cartpole_frames``: rendered dm_control cartpole-swingup frames from bang-bang rollouts
  (a random full push held for ``hold`` steps swings the pole all the way round; past
  ``|x| > 1`` m the push turns back to the centre, since the fixed camera loses the cart
  beyond about 1.6 m), rewarded by the suite's own reward.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from rlvlmf.reward.inputs import RewardInputs

CORNER = (slice(50, 64), slice(50, 64))
"""The rewarded square of ``corner_square_frames`` on the 64 px grid."""


def corner_square_frames(rng: np.random.Generator, n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Noise frames whose reward is the brightness added to the bottom-right square.

    A distractor square of random brightness sits anywhere else, so nothing outside the
    corner tells the rewards apart.

    Args:
        rng: Draws the noise, the distractor and the rewards.
        n: Number of frames.
        size: Side of the returned frames; frames are drawn at 64 px and resized (bilinear).

    Returns:
        ``(n, size, size, 3)`` uint8 frames and ``(n,)`` float64 rewards in ``[0, 1]``.
    """
    frames = rng.integers(0, 100, (n, 64, 64, 3)).astype(np.float64)
    for frame in frames:
        row, col = rng.integers(0, 36, 2)
        frame[row : row + 14, col : col + 14] += rng.uniform(0, 155)
    rewards = rng.uniform(0.0, 1.0, n)
    frames[:, CORNER[0], CORNER[1]] = rng.integers(0, 100, (n, 14, 14, 3)) + 155 * rewards[:, None, None, None]
    return _resized(np.clip(frames, 0, 255).astype(np.uint8), size), rewards


def cartpole_frames(n: int, frame_size: int = 64, *, seed: int = 0, hold: int = 15, episode_steps: int = 400,
                    turn_back_at: float = 1.0, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rendered cartpole-swingup frames and the suite's reward of the steps drawn.

    Args:
        n: Number of frames.
        frame_size: Side of the frames (the preset's render, resized as the trainer does).
        seed: Seeds the resets and the pushes.
        hold: Steps each random full push (-1 or +1) is held.
        episode_steps: Steps per episode before the next reset.
        turn_back_at: Cart position (m) beyond which a push away from the centre is reversed.
        every: Draw one step in ``every`` (neighbouring steps look alike, and drawing costs far
            more than stepping).

    Returns:
        ``(n, frame_size, frame_size, 3)`` uint8 frames and ``(n,)`` float64 rewards.
    """
    from rlvlmf.envs import make_env

    rng = np.random.default_rng(seed)
    env = make_env("cartpole-swingup", frame_size=frame_size)
    frames, rewards = np.empty((n, frame_size, frame_size, 3), np.uint8), np.empty(n)
    try:
        shape = env.action_space.shape
        assert shape is not None  # cartpole's actions are a Box
        push = np.zeros(shape, np.float32)
        for step in range(n * every):
            if step % episode_steps == 0:
                obs, _ = env.reset(seed=int(rng.integers(2**31)))
            if step % hold == 0:
                push[:] = rng.choice([-1.0, 1.0])
            if abs(obs[0]) > turn_back_at and push[0] * obs[0] > 0:  # obs[0]: cart position
                push[:] = -push
            obs, reward, _, _, _ = env.step(push)
            if step % every == 0:
                rewards[step // every], frames[step // every] = reward, np.asarray(env.render())
    finally:
        env.close()
    return frames, rewards


def frame_pairs(
    frames: np.ndarray, rewards: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[RewardInputs, RewardInputs, np.ndarray]:
    """``n`` random single-frame pairs with distinct rewards, labelled by the larger reward.

    Returns:
        ``(first, second, labels)``: segments of length 1 (``(m, 1, S, S, 3)``) and ``(m,)``
        labels, 1 where the second frame's reward is larger; ``m <= n`` (ties dropped).
    """
    a, b = rng.integers(0, len(frames), (2, n))
    keep = rewards[a] != rewards[b]
    a, b = a[keep], b[keep]
    labels = (rewards[b] > rewards[a]).astype(np.int64)
    return RewardInputs(frames[a][:, None], None), RewardInputs(frames[b][:, None], None), labels


def pairwise_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Share of all pairs with distinct true rewards that ``predicted`` orders the same way.

    Args:
        predicted: ``(N,)`` model rewards.
        truth: ``(N,)`` ground-truth rewards.
    """
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    upper = np.triu_indices(len(truth), k=1)
    true_gap = (truth[:, None] - truth[None, :])[upper]
    model_gap = (predicted[:, None] - predicted[None, :])[upper]
    counted = true_gap != 0
    return float(np.mean(np.sign(model_gap[counted]) == np.sign(true_gap[counted])))


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1] == size:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR)) for f in frames])
