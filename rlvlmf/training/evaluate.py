"""Policy evaluation: N episodes from seeded, randomised initial states, with an optional GIF."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlvlmf.errors import ConfigError

MAX_VIDEO_FRAMES = 150
VIDEO_FPS = 15
VIDEO_SUFFIXES = (".gif", ".mp4")
"""Video formats ``write_video`` writes, chosen by the file's suffix."""


@dataclass
class EvalResult:
    """Per-episode outcomes of one evaluation.

    Attributes:
        returns: Env (ground-truth) return of each episode.
        lengths: Steps of each episode.
        successes: Whether each episode ended in success (``info["success"]`` at any step),
            or ``None`` when the env reports no success signal.
    """

    returns: list[float]
    lengths: list[int]
    successes: list[bool] | None

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def success_rate(self) -> float | None:
        return None if self.successes is None else float(np.mean(self.successes))

    def to_dict(self) -> dict[str, Any]:
        """The ``eval.jsonl`` record (without the step)."""
        return {"returns": self.returns, "successes": self.successes, "lengths": self.lengths,
                "return_mean": self.return_mean, "success_rate": self.success_rate}


def evaluation_seed(run_seed: int) -> int:
    """Reset seed of the first evaluation episode of a run trained with ``run_seed``.

    Far from the training episodes' seeds, and the same at every evaluation of the run, so
    other code (a peer's agent, a replay of the final policy) can start from the same states.
    """
    return 10**6 + 1000 * run_seed


def evaluate_policy(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    *,
    seed: int,
    video_path: str | Path | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes; episode ``i`` starts from ``env.reset(seed=seed + i)``.

    Using the same seeds at every evaluation makes curves comparable across steps, while the
    starts still differ between episodes (unlike the reference code's single fixed start).

    Args:
        env: The env to evaluate in (not the training env: its episode would be cut).
        policy: Maps an observation to an action (deterministic for evaluation).
        episodes: Episodes to run.
        seed: Seed of the first episode.
        video_path: Where to write a video of the first episode (every k-th frame, at most
            ``MAX_VIDEO_FRAMES``): ``.gif`` or ``.mp4`` (see ``write_video``), or ``None``.

    Returns:
        The episodes' returns, lengths and successes.
    """
    returns, lengths, successes = [], [], []
    has_success = False
    frames: list[np.ndarray] = []
    limit = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else None
    every = max(1, (limit or 1000) // MAX_VIDEO_FRAMES)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, length, success, done = 0.0, 0, False, False
        record = video_path is not None and i == 0
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            length += 1
            if "success" in info:
                has_success = True
                success = success or bool(info["success"])
            if record and length % every == 0 and len(frames) < MAX_VIDEO_FRAMES:
                frames.append(np.asarray(env.render()))
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        successes.append(success)
    if video_path is not None and frames:
        write_video(video_path, frames)
    return EvalResult(returns, lengths, successes if has_success else None)


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = VIDEO_FPS) -> None:
    """Write ``(H, W, 3)`` uint8 frames as a looping GIF or an H.264 MP4, by the path's suffix.

    Raises:
        ConfigError: Another suffix.
    """
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"video {path}: the suffix must be one of {', '.join(VIDEO_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        # imageio's GIF writer takes the frame duration in milliseconds (1 / fps would be 0 ms: as fast as a viewer can).
        imageio.mimsave(path, list[Any](frames), duration=1000 / fps, loop=0)
        return
    # H.264 wants even sides; macro_block_size=1 keeps the frames' own size, so pad odd ones.
    height, width = frames[0].shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    padded: list[Any] = [np.pad(frame, pad, mode="edge") for frame in frames]
    imageio.mimsave(path, padded, fps=fps, macro_block_size=1)
