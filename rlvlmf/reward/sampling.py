"""Which pairs to ask about: uniform, ensemble disagreement and entropy selection.

Pure functions over buffer slots. Candidates are segments of ``segment_length`` steps
(1 for RL-VLM-F's single frames) drawn uniformly from recent finished episodes; the
informed methods score a pool ``pool_multiplier`` times larger than needed with the
ensemble and keep the top ones, as PEBBLE does. A pair of the same slots, or of
pixel-identical frames, tells the teacher nothing and is never proposed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from rlvlmf.errors import ConfigError

SamplingMethod = Literal["uniform", "disagreement", "entropy"]
SAMPLING_METHODS: tuple[str, ...] = get_args(SamplingMethod)


@dataclass(frozen=True)
class SegmentPairs:
    """Pairs of segments, as replay-buffer slots.

    Attributes:
        first: ``(N, T)`` int64 slots of the first segments, in time order.
        second: ``(N, T)`` int64 slots of the second segments.
    """

    first: np.ndarray
    second: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    def take(self, index: np.ndarray | slice) -> SegmentPairs:
        """The pairs at ``index`` along the first axis."""
        return SegmentPairs(self.first[index], self.second[index])


MemberReturns = Callable[[SegmentPairs], tuple[np.ndarray, np.ndarray]]
"""Maps pairs to every ensemble member's returns of both sides, each ``(E, N)``."""


def sample_segments(episodes: Sequence[np.ndarray], count: int, segment_length: int, rng: np.random.Generator) -> np.ndarray:
    """Segments drawn uniformly over every valid segment of the given episodes.

    Args:
        episodes: Slots of each episode in time order (``ReplayBuffer.recent_episodes``).
        count: Segments to draw (with replacement).
        segment_length: Steps per segment.
        rng: Draws the segments.

    Returns:
        ``(count, segment_length)`` int64 slots.

    Raises:
        ValueError: No episode has ``segment_length`` steps.
    """
    if segment_length < 1:
        raise ConfigError(f"segment_length must be >= 1, got {segment_length}")
    starts_per_episode = np.array([max(len(ep) - segment_length + 1, 0) for ep in episodes], dtype=np.int64)
    total = int(starts_per_episode.sum())
    if total == 0:
        raise ValueError(f"no finished episode has {segment_length} steps to draw a segment from ({len(episodes)} episodes)")
    draws = rng.integers(0, total, size=count)
    ends = np.cumsum(starts_per_episode)
    which = np.searchsorted(ends, draws, side="right")
    offsets = draws - (ends[which] - starts_per_episode[which])
    segments = np.zeros((count, segment_length), np.int64)
    steps = np.arange(segment_length)
    for i, (episode, offset) in enumerate(zip(which, offsets)):
        segments[i] = episodes[episode][offset + steps]
    return segments


def candidate_pairs(episodes: Sequence[np.ndarray], count: int, segment_length: int, rng: np.random.Generator) -> SegmentPairs:
    """``count`` pairs of independently drawn segments (identical ones not yet removed)."""
    return SegmentPairs(
        sample_segments(episodes, count, segment_length, rng), sample_segments(episodes, count, segment_length, rng)
    )


def drop_identical(pairs: SegmentPairs, frames: np.ndarray | None = None) -> SegmentPairs:
    """Remove pairs whose two sides are the same slots or, given frames, the same pixels.

    Args:
        pairs: Candidate pairs.
        frames: ``(capacity, S, S, 3)`` frames indexed by slot, or ``None`` to compare slots only.

    Returns:
        The remaining pairs, in the same order.
    """
    same = (pairs.first == pairs.second).all(axis=1)
    if frames is not None and len(pairs):
        first, second = frames[pairs.first], frames[pairs.second]
        same |= (first == second).reshape(len(pairs), -1).all(axis=1)
    return pairs.take(~same)


def _preference_probs(returns_first: np.ndarray, returns_second: np.ndarray) -> np.ndarray:
    """Each member's Bradley-Terry P(second better), ``(E, N)``."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(returns_second, np.float64) - returns_first)))


def disagreement_scores(returns_first: np.ndarray, returns_second: np.ndarray) -> np.ndarray:
    """Standard deviation over members of P(second better).

    Args:
        returns_first: ``(E, N)`` member returns of the first segments.
        returns_second: ``(E, N)`` member returns of the second segments.

    Returns:
        ``(N,)`` scores; higher means the members disagree more.
    """
    return _preference_probs(returns_first, returns_second).std(axis=0)


def entropy_scores(returns_first: np.ndarray, returns_second: np.ndarray) -> np.ndarray:
    """Mean over members of the entropy (nats) of each member's preference, as in PEBBLE.

    Args:
        returns_first: ``(E, N)`` member returns of the first segments.
        returns_second: ``(E, N)`` member returns of the second segments.

    Returns:
        ``(N,)`` scores in ``[0, ln 2]``; highest where members find the pair a toss-up.
    """
    p = np.clip(_preference_probs(returns_first, returns_second), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p)).mean(axis=0)


def _distinct_candidates(
    episodes: Sequence[np.ndarray],
    count: int,
    segment_length: int,
    rng: np.random.Generator,
    frames: np.ndarray | None,
    max_draws: int = 10,
) -> SegmentPairs:
    """Up to ``count`` non-identical candidate pairs, drawing again while some were dropped."""
    kept: list[SegmentPairs] = []
    have = 0
    for _ in range(max_draws):
        # A few extra per draw, so that dropping identical pairs rarely needs a second draw.
        fresh = drop_identical(candidate_pairs(episodes, count - have + max(8, count // 4), segment_length, rng), frames)
        kept.append(fresh)
        have += len(fresh)
        if have >= count:
            break
    return SegmentPairs(np.concatenate([p.first for p in kept]), np.concatenate([p.second for p in kept])).take(slice(0, count))


def select_queries(
    method: SamplingMethod,
    episodes: Sequence[np.ndarray],
    num_queries: int,
    segment_length: int,
    rng: np.random.Generator,
    *,
    member_returns: MemberReturns | None = None,
    frames: np.ndarray | None = None,
    pool_multiplier: int = 10,
) -> SegmentPairs:
    """Choose the pairs of one feedback round.

    Args:
        method: ``"uniform"``, ``"disagreement"`` or ``"entropy"``.
        episodes: Slots of the recent finished episodes to draw from.
        num_queries: Pairs wanted.
        segment_length: Steps per segment (1 = single frames).
        rng: Draws the candidates.
        member_returns: Ensemble returns of candidate pairs; required by the informed methods.
        frames: Slot-indexed frames, to also skip pixel-identical pairs.
        pool_multiplier: Informed methods score ``pool_multiplier * num_queries`` candidates.

    Returns:
        Up to ``num_queries`` pairs (fewer only if nearly every candidate, over ten draws,
        was identical).

    Raises:
        ConfigError: Unknown method, or an informed method without ``member_returns``.
    """
    if method not in SAMPLING_METHODS:
        raise ConfigError(f"unknown query sampling method {method!r}; valid: {', '.join(SAMPLING_METHODS)}")
    if pool_multiplier < 1:
        raise ConfigError(f"pool_multiplier must be >= 1, got {pool_multiplier}")
    if num_queries < 1:
        return SegmentPairs(np.zeros((0, segment_length), np.int64), np.zeros((0, segment_length), np.int64))
    pool_size = num_queries if method == "uniform" else num_queries * pool_multiplier
    pool = _distinct_candidates(episodes, pool_size, segment_length, rng, frames)
    if method == "uniform":
        return pool
    if member_returns is None:
        raise ConfigError(f"query sampling {method!r} needs the ensemble's member returns")
    returns_first, returns_second = member_returns(pool)
    score = disagreement_scores if method == "disagreement" else entropy_scores
    scores = score(returns_first, returns_second)
    best = np.argsort(-scores, kind="stable")[:num_queries]
    return pool.take(best)
