"""Query sampling: valid segments, identical pairs skipped, informed methods pick the right pairs."""

from __future__ import annotations

import numpy as np
import pytest

from rlvlmf.errors import ConfigError
from rlvlmf.reward.sampling import (
    SegmentPairs,
    candidate_pairs,
    disagreement_scores,
    drop_identical,
    entropy_scores,
    sample_segments,
    select_queries,
)


def test_segments_stay_inside_one_episode(rng: np.random.Generator) -> None:
    # Episode 2 wraps around a buffer of capacity 20; episode 1 is too short for T=4.
    episodes = [np.arange(0, 8), np.arange(8, 11), np.array([15, 16, 17, 18, 19, 0, 1])]
    segments = sample_segments(episodes, 500, 4, rng)
    assert segments.shape == (500, 4)
    valid = {tuple(ep[s:s + 4]) for ep in episodes for s in range(len(ep) - 3)}
    assert {tuple(s) for s in segments} == valid  # every valid segment appears, nothing else
    with pytest.raises(ValueError, match="no finished episode"):
        sample_segments([np.arange(3)], 5, 4, rng)


def test_identical_pairs_are_dropped() -> None:
    frames = np.zeros((6, 2, 2, 3), np.uint8)
    frames[1] = 7
    frames[2] = 7  # slots 1 and 2 look the same
    frames[3] = 9
    pairs = SegmentPairs(np.array([[0], [1], [1], [3], [4]]), np.array([[0], [2], [3], [3], [5]]))
    by_slot = drop_identical(pairs)
    assert by_slot.first[:, 0].tolist() == [1, 1, 4]
    by_pixels = drop_identical(pairs, frames)
    assert by_pixels.first[:, 0].tolist() == [1] and by_pixels.second[:, 0].tolist() == [3]


def test_select_never_proposes_identical_pairs(rng: np.random.Generator) -> None:
    episodes = [np.arange(3)]  # only 3 frames: many candidates coincide
    frames = np.zeros((3, 2, 2, 3), np.uint8)
    frames[2] = 1  # slots 0 and 1 are pixel-identical
    for method in ("uniform", "disagreement", "entropy"):
        pairs = select_queries(
            method, episodes, 20, 1, rng, frames=frames, member_returns=lambda p: (np.zeros((2, len(p))), np.ones((2, len(p))))
        )
        assert len(pairs) == 20
        assert ((pairs.first == 2) ^ (pairs.second == 2)).all()


def test_scores_on_a_constructed_example() -> None:
    # Three pairs, two members. Pair 0: members agree, confident. Pair 1: members disagree
    # strongly. Pair 2: both members think it is a toss-up.
    returns_first = np.array([[0.0, 3.0, 0.0], [0.0, -3.0, 0.0]])
    returns_second = np.array([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    disagreement = disagreement_scores(returns_first, returns_second)
    entropy = entropy_scores(returns_first, returns_second)
    assert np.argmax(disagreement) == 1 and disagreement[0] == disagreement[2] == 0.0
    assert np.argmax(entropy) == 2 and entropy[2] == pytest.approx(np.log(2))
    assert entropy[0] < entropy[1]


def test_disagreement_selection_picks_the_most_contested_pairs(rng: np.random.Generator) -> None:
    """Members disagree exactly on pairs touching slots >= 90; selection must find those."""
    episodes = [np.arange(0, 50), np.arange(50, 100)]
    member_a = np.linspace(-1, 1, 100)
    member_b = member_a.copy()
    member_b[90:] *= -5  # member b reverses and amplifies the last slots

    def member_returns(pairs: SegmentPairs) -> tuple[np.ndarray, np.ndarray]:
        members = np.stack([member_a, member_b])
        return members[:, pairs.first].sum(-1), members[:, pairs.second].sum(-1)

    chosen = select_queries("disagreement", episodes, 10, 1, rng, member_returns=member_returns, pool_multiplier=20)
    assert len(chosen) == 10
    assert ((chosen.first >= 90) | (chosen.second >= 90)).all()
    uniform = select_queries("uniform", episodes, 200, 1, rng)
    assert ((uniform.first < 90) & (uniform.second < 90)).mean() > 0.6  # the uniform baseline rarely does


def test_segments_and_bad_arguments(rng: np.random.Generator) -> None:
    pairs = candidate_pairs([np.arange(30)], 16, 5, rng)
    assert pairs.first.shape == pairs.second.shape == (16, 5)
    assert (np.diff(pairs.first, axis=1) == 1).all()
    with pytest.raises(ConfigError, match="valid: uniform, disagreement, entropy"):
        select_queries("random", [np.arange(5)], 2, 1, rng)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="member returns"):
        select_queries("entropy", [np.arange(5)], 2, 1, rng)
    assert len(select_queries("uniform", [np.arange(5)], 0, 1, rng)) == 0
