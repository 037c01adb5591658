"""Rewards read off a CLIP-family model: Baumli et al., VLM-RM, and raw cosine similarity.

The formulas are pure functions on embeddings (numpy, float64 internally). ``ClipReward``
wraps any scorer with ``embed_images`` / ``embed_texts`` (the ``clip`` backend's
``ClipScorer``, or a fake in tests), embeds the task's phrases once, and caches the reward of
every frame by its ``frame_hash`` (the query store's), so a frame seen twice is embedded once.

Sources:
    Baumli et al. 2023, "Vision-Language Models as a Source of Rewards": p(goal | frame) is a
    softmax over the goal phrase and negative phrases of cosine / temperature; the reward is
    the binary 1[p > beta].
    Rocamonde et al. 2023, "VLM-RM": r = 1 - 1/2 ||(x - g) P||^2 on normalised embeddings,
    P = alpha d d^T / ||d||^2 + (1 - alpha) I, d = g - b (goal minus baseline), where b is the
    plain mean of the normalised baseline-phrase embeddings (as in the authors' code).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.utils.clip_scores import baumli_probability
from rlvlmf.utils.hashing import frame_hash

Variant = Literal["baumli", "vlmrm", "cosine"]
VARIANTS: tuple[str, ...] = ("baumli", "vlmrm", "cosine")


class EmbeddingScorer(Protocol):
    """What ``ClipReward`` needs from a CLIP-family model (duck-typed)."""

    def embed_images(self, frames: np.ndarray) -> Any:
        """Embed ``(N, H, W, 3)`` uint8 frames into ``(N, D)`` vectors."""

    def embed_texts(self, texts: Sequence[str]) -> Any:
        """Embed ``M`` strings into ``(M, D)`` vectors."""


def as_numpy(x: Any) -> np.ndarray:
    """Turn a numpy array or a torch tensor (any device, with or without grad) into float64 numpy."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Scale vectors to unit L2 norm along ``axis``.

    Args:
        x: Embeddings, e.g. ``(N, D)`` or ``(D,)``.
        axis: The embedding axis.

    Returns:
        Same shape, unit norm along ``axis``.

    Raises:
        ValueError: A vector has zero norm (it has no direction to compare).
    """
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("cannot normalise a zero embedding")
    return x / norm


def cosine_reward(frames: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Cosine similarity of each frame embedding with the goal embedding.

    Args:
        frames: ``(N, D)`` unit-norm frame embeddings.
        goal: ``(D,)`` unit-norm goal embedding.

    Returns:
        ``(N,)`` similarities in [-1, 1].
    """
    return np.asarray(frames, dtype=np.float64) @ np.asarray(goal, dtype=np.float64)


def baumli_reward(
    frames: np.ndarray, goal: np.ndarray, negatives: np.ndarray, temperature: float, beta: float
) -> np.ndarray:
    """Binary reward of Baumli et al.: ``1[p(goal | frame) > beta]``.

    Args:
        frames: ``(N, D)`` unit-norm frame embeddings.
        goal: ``(D,)`` unit-norm goal-phrase embedding.
        negatives: ``(K, D)`` unit-norm negative-phrase embeddings.
        temperature: Softmax temperature (> 0).
        beta: Probability threshold in [0, 1).

    Returns:
        ``(N,)`` float64 array of 0.0 and 1.0.
    """
    return (baumli_probability(frames, goal, negatives, temperature) > beta).astype(np.float64)


def vlmrm_projection(goal: np.ndarray, baseline: np.ndarray, alpha: float) -> np.ndarray:
    """VLM-RM's goal-baseline projection ``P = alpha d d^T / ||d||^2 + (1 - alpha) I``.

    Args:
        goal: ``(D,)`` unit-norm goal embedding ``g``.
        baseline: ``(D,)`` baseline embedding ``b``: the mean of unit-norm baseline-phrase
            embeddings (unit norm only when there is one phrase).
        alpha: Weight in [0, 1] of the direction ``d = g - b``; 0 gives the identity.

    Returns:
        ``(D, D)`` symmetric matrix.

    Raises:
        ValueError: ``goal`` equals ``baseline`` while ``alpha > 0`` (no direction).
    """
    d = np.asarray(goal, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    identity = np.eye(d.shape[0])
    if alpha == 0:
        return identity
    norm2 = float(d @ d)
    if norm2 == 0:
        raise ValueError("goal and baseline embeddings are equal: the VLM-RM direction is undefined")
    return alpha * np.outer(d, d) / norm2 + (1 - alpha) * identity


def vlmrm_reward(frames: np.ndarray, goal: np.ndarray, baseline: np.ndarray, alpha: float) -> np.ndarray:
    """VLM-RM reward ``1 - 1/2 ||(x - g) P||^2``.

    Args:
        frames: ``(N, D)`` unit-norm frame embeddings ``x``.
        goal: ``(D,)`` unit-norm goal embedding ``g``.
        baseline: ``(D,)`` baseline embedding ``b`` (the mean of unit-norm phrase embeddings).
        alpha: Projection strength in [0, 1]; 0 gives ``1 - 1/2 ||x - g||^2 = cos(x, g)``.

    Returns:
        ``(N,)`` rewards (at most 1, reached when ``x`` matches ``g`` along the projection).
    """
    projected = (np.asarray(frames, dtype=np.float64) - goal) @ vlmrm_projection(goal, baseline, alpha)
    return 1.0 - 0.5 * np.sum(projected**2, axis=1)


@dataclass(frozen=True)
class ClipRewardConfig:
    """How a CLIP-family model's embeddings become a reward.

    Attributes:
        variant: ``"baumli"`` (binary thresholded softmax), ``"vlmrm"`` (goal-baseline
            projection) or ``"cosine"`` (raw similarity to the goal phrase).
        temperature: Softmax temperature of ``"baumli"`` (> 0).
        beta: Threshold of ``"baumli"`` on p(goal | frame), in [0, 1).
        alpha: Projection strength of ``"vlmrm"``, in [0, 1].
        goal_phrase: The goal text; ``None`` takes the task's first positive phrase.
        baseline_phrases: Negative texts (Baumli's contrast set; the plain mean of their
            unit-norm embeddings is VLM-RM's baseline); ``None`` takes the task's negative phrases.
        batch_size: Frames per ``embed_images`` call.
        cache_size: Most frame rewards kept in the cache (least recently used dropped).
    """

    variant: str = "vlmrm"
    temperature: float = 0.01
    beta: float = 0.5
    alpha: float = 0.5
    goal_phrase: str | None = None
    baseline_phrases: tuple[str, ...] | None = None
    batch_size: int = 64
    cache_size: int = 200_000

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown CLIP reward variant {self.variant!r}; valid: {', '.join(VARIANTS)}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.beta < 1:
            raise ConfigError(f"beta must be in [0, 1), got {self.beta}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.goal_phrase is not None and not self.goal_phrase.strip():
            raise ConfigError("goal_phrase is empty; leave it unset to use the task's first positive phrase")
        if self.baseline_phrases is not None and not all(p.strip() for p in self.baseline_phrases):
            raise ConfigError("baseline_phrases contains an empty phrase")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.cache_size < 0:
            raise ConfigError(f"cache_size must be >= 0, got {self.cache_size}")

    def phrases(self, task: TaskDescription) -> tuple[str, tuple[str, ...]]:
        """The goal phrase and the baseline phrases for ``task``.

        Raises:
            ConfigError: The variant needs baseline phrases (``baumli``, ``vlmrm``) and
                neither the config nor the task gives any.
        """
        goal = self.goal_phrase if self.goal_phrase is not None else task.positive_phrases[0]
        baselines = self.baseline_phrases if self.baseline_phrases is not None else task.negative_phrases
        if self.variant != "cosine" and not baselines:
            raise ConfigError(
                f"the {self.variant!r} CLIP reward needs negative/baseline phrases, and task {task.name!r} "
                "has none: set baseline_phrases or use variant 'cosine'"
            )
        return goal, tuple(baselines)


class ClipReward:
    """Rewards of rendered frames from a CLIP-family model, cached by frame hash.

    Args:
        scorer: Any object with ``embed_images(frames (N, H, W, 3) uint8) -> (N, D)`` and
            ``embed_texts(texts) -> (M, D)`` (numpy or torch; normalised here).
        task: Gives the default goal and baseline phrases.
        config: Variant and its parameters.
    """

    def __init__(self, scorer: EmbeddingScorer, task: TaskDescription, config: ClipRewardConfig | None = None) -> None:
        self.scorer = scorer
        self.config = config or ClipRewardConfig()
        self.goal_phrase, self.baseline_phrases = self.config.phrases(task)
        texts = [self.goal_phrase, *self.baseline_phrases]
        embedded = normalize(as_numpy(scorer.embed_texts(texts)))
        if embedded.shape[0] != len(texts):
            raise ValueError(f"embed_texts returned {embedded.shape[0]} rows for {len(texts)} texts")
        self.goal = embedded[0]
        self.negatives = embedded[1:]
        # VLM-RM's baseline is the plain mean of the normalised baseline-phrase embeddings, not
        # renormalised: the mean of several phrases lies inside the sphere, and d = g - b with
        # that shorter b is the direction the paper projects on.
        self.baseline = self.negatives.mean(axis=0) if len(self.negatives) else None
        self._cache: OrderedDict[str, float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def rewards_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """The configured formula on frame embeddings.

        Args:
            embeddings: ``(N, D)`` frame embeddings (normalised here).

        Returns:
            ``(N,)`` float64 rewards.
        """
        x = normalize(as_numpy(embeddings))
        cfg = self.config
        if cfg.variant == "cosine":
            return cosine_reward(x, self.goal)
        if cfg.variant == "baumli":
            return baumli_reward(x, self.goal, self.negatives, cfg.temperature, cfg.beta)
        assert self.baseline is not None  # phrases() guarantees baselines for vlmrm
        return vlmrm_reward(x, self.goal, self.baseline, cfg.alpha)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Rewards of a batch of frames; frames seen before are not embedded again.

        Args:
            frames: ``(N, H, W, 3)`` uint8 frames.

        Returns:
            ``(N,)`` float32 rewards.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (N, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:  # the cache key (frame_hash) reads pixels as uint8
            raise ValueError(f"frames must be uint8 pixels, got {frames.dtype}")
        keys = [frame_hash(f) for f in frames]
        out = np.empty(len(frames), dtype=np.float64)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            cached = self._cache.get(key)
            if cached is None:
                todo.setdefault(key, []).append(i)
            else:
                self._cache.move_to_end(key)
                out[i] = cached
                self.hits += 1
        # Embed each new distinct frame once, even when it repeats inside this batch.
        first_index = [rows[0] for rows in todo.values()]
        self.misses += len(first_index)
        bs = self.config.batch_size
        for start in range(0, len(first_index), bs):
            chunk = first_index[start : start + bs]
            values = self.rewards_from_embeddings(self.scorer.embed_images(frames[chunk]))
            for row, value in zip(chunk, values):
                for i in todo[keys[row]]:
                    out[i] = value
                self._remember(keys[row], float(value))
        return out.astype(np.float32)

    def _remember(self, key: str, value: float) -> None:
        if self.config.cache_size == 0:
            return
        self._cache[key] = value
        if len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
