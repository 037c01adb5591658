"""CLIP-family reward formulas on known embeddings, and ClipReward's batching and cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.reward.vlm_rewards import (
    ClipReward,
    ClipRewardConfig,
    baumli_reward,
    cosine_reward,
    normalize,
    vlmrm_projection,
    vlmrm_reward,
)
from rlvlmf.utils.clip_scores import baumli_probability

GOAL = np.array([1.0, 0.0])
NEG = np.array([[0.0, 1.0]])
FRAMES = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


def test_cosine_is_dot_product_of_unit_vectors() -> None:
    np.testing.assert_allclose(cosine_reward(FRAMES, GOAL), [1.0, 0.0, 0.6])


def test_baumli_probability_matches_hand_softmax() -> None:
    p = baumli_probability(FRAMES, GOAL, NEG, temperature=0.5)
    # logits (cos / 0.5): frame 0 -> (2, 0); frame 1 -> (0, 2); frame 2 -> (1.2, 1.6).
    expected = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2)), 1 / (1 + math.exp(0.4))]
    np.testing.assert_allclose(p, expected)


def test_baumli_reward_thresholds_at_beta() -> None:
    # p of frame 2 is 0.4013: above 0.4, below 0.45.
    np.testing.assert_array_equal(baumli_reward(FRAMES, GOAL, NEG, 0.5, beta=0.4), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(baumli_reward(FRAMES, GOAL, NEG, 0.5, beta=0.45), [1.0, 0.0, 0.0])


def test_baumli_probability_is_stable_at_tiny_temperature() -> None:
    p = baumli_probability(FRAMES, GOAL, NEG, temperature=1e-4)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [1.0, 0.0, 0.0], atol=1e-12)


def test_vlmrm_projection_is_direction_projector_at_alpha_one() -> None:
    p = vlmrm_projection(GOAL, NEG[0], alpha=1.0)
    np.testing.assert_allclose(p, [[0.5, -0.5], [-0.5, 0.5]])
    np.testing.assert_allclose(p @ p, p)  # idempotent: a projection
    np.testing.assert_allclose(vlmrm_projection(GOAL, NEG[0], alpha=0.0), np.eye(2))


def test_vlmrm_reward_matches_hand_values() -> None:
    # alpha = 1: (x - g) P = ((x - g).d / |d|^2) d with d = (1, -1).
    # frame (0.6, 0.8): (x - g).d = -1.2 -> (-0.6, 0.6), |.|^2 = 0.72 -> 1 - 0.36 = 0.64.
    np.testing.assert_allclose(vlmrm_reward(FRAMES, GOAL, NEG[0], alpha=1.0), [1.0, 0.0, 0.64])
    # alpha = 0: 1 - |x - g|^2 / 2 is the cosine for unit vectors.
    np.testing.assert_allclose(vlmrm_reward(FRAMES, GOAL, NEG[0], alpha=0.0), cosine_reward(FRAMES, GOAL))
    # alpha = 0.5 mixes the two squared norms linearly in P, check one frame by hand:
    # (x - g) = (-0.4, 0.8); P = [[0.75, -0.25], [-0.25, 0.75]] -> (-0.5, 0.7), |.|^2 = 0.74.
    np.testing.assert_allclose(vlmrm_reward(FRAMES[2:], GOAL, NEG[0], alpha=0.5), [1 - 0.37])


def test_vlmrm_ignores_motion_orthogonal_to_direction_at_alpha_one() -> None:
    goal = normalize(np.array([1.0, 0.0, 0.0]))
    base = normalize(np.array([0.0, 1.0, 0.0]))
    a = normalize(np.array([0.5, 0.5, 0.7]))
    b = normalize(np.array([0.5, 0.5, -0.7]))  # same along d = g - b, differs along z
    r = vlmrm_reward(np.stack([a, b]), goal, base, alpha=1.0)
    assert r[0] == pytest.approx(r[1])


def test_vlmrm_rejects_equal_goal_and_baseline() -> None:
    with pytest.raises(ValueError, match="equal"):
        vlmrm_projection(GOAL, GOAL, alpha=0.5)


def test_normalize_rejects_zero_vector() -> None:
    with pytest.raises(ValueError, match="zero"):
        normalize(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variant": "blip"},
        {"temperature": 0.0},
        {"beta": 1.0},
        {"alpha": 1.5},
        {"goal_phrase": "  "},
        {"batch_size": 0},
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ClipRewardConfig(**kwargs)


class FakeScorer:
    """Embeds text by lookup and a frame by its top-left pixel's first two channels."""

    def __init__(self, texts: dict[str, list[float]]) -> None:
        self.texts = texts
        self.image_calls: list[int] = []

    def embed_texts(self, texts):
        return np.array([self.texts[t] for t in texts], dtype=np.float32)

    def embed_images(self, frames):
        self.image_calls.append(len(frames))
        # Unnormalised on purpose: ClipReward must normalise.
        return frames[:, 0, 0, :2].astype(np.float32) * 3.0


TASK = TaskDescription(
    name="toy", goal="to reach the goal", positive_phrases=("at the goal",), negative_phrases=("far away",)
)


def frames_from(vectors: np.ndarray) -> np.ndarray:
    """(N, 2) small non-negative integers -> (N, 4, 4, 3) uint8 frames carrying them."""
    out = np.zeros((len(vectors), 4, 4, 3), dtype=np.uint8)
    out[:, 0, 0, :2] = vectors
    return out


@pytest.mark.parametrize("variant", ["cosine", "baumli", "vlmrm"])
def test_clip_reward_applies_formula_to_scorer_embeddings(variant: str) -> None:
    scorer = FakeScorer({"at the goal": [2.0, 0.0], "far away": [0.0, 5.0]})
    cfg = ClipRewardConfig(variant=variant, temperature=0.5, beta=0.4, alpha=1.0)
    reward = ClipReward(scorer, TASK, cfg)
    r = reward(frames_from(np.array([[10, 0], [0, 10], [6, 8]])))
    assert r.dtype == np.float32 and r.shape == (3,)
    expected = {
        "cosine": [1.0, 0.0, 0.6],
        "baumli": [1.0, 0.0, 1.0],
        "vlmrm": [1.0, 0.0, 0.64],
    }[variant]
    np.testing.assert_allclose(r, expected, atol=1e-6)


def test_clip_reward_embeds_each_distinct_frame_once() -> None:
    scorer = FakeScorer({"at the goal": [1.0, 0.0], "far away": [0.0, 1.0]})
    reward = ClipReward(scorer, TASK, ClipRewardConfig(variant="cosine", batch_size=2))
    batch = frames_from(np.array([[1, 0], [0, 1], [1, 0], [3, 4], [0, 1]]))
    first = reward(batch)
    assert sum(scorer.image_calls) == 3  # three distinct frames
    assert max(scorer.image_calls) <= 2  # chunked by batch_size
    np.testing.assert_allclose(first, [1.0, 0.0, 1.0, 0.6, 0.0], atol=1e-6)
    second = reward(batch[::-1])
    assert sum(scorer.image_calls) == 3  # all cached
    np.testing.assert_array_equal(second, first[::-1])
    assert reward.hits == 5 and reward.misses == 3


def test_clip_reward_cache_is_bounded() -> None:
    scorer = FakeScorer({"at the goal": [1.0, 0.0], "far away": [0.0, 1.0]})
    reward = ClipReward(scorer, TASK, ClipRewardConfig(variant="cosine", cache_size=2))
    reward(frames_from(np.array([[1, 0], [0, 1], [3, 4]])))
    reward(frames_from(np.array([[1, 0]])))  # evicted as the oldest: embedded again
    assert sum(scorer.image_calls) == 4


def test_clip_reward_caches_by_the_store_frame_hash_and_wants_uint8() -> None:
    from rlvlmf.feedback.store import frame_hash

    scorer = FakeScorer({"at the goal": [1.0, 0.0], "far away": [0.0, 1.0]})
    reward = ClipReward(scorer, TASK, ClipRewardConfig(variant="cosine"))
    frames = frames_from(np.array([[1, 0], [3, 4]]))
    reward(frames)
    assert list(reward._cache) == [frame_hash(frames[0]), frame_hash(frames[1])]
    with pytest.raises(ValueError, match="uint8"):
        reward(frames.astype(np.float32))


def test_config_phrases_default_from_task_and_override() -> None:
    assert ClipRewardConfig().phrases(TASK) == ("at the goal", ("far away",))
    cfg = ClipRewardConfig(goal_phrase="open", baseline_phrases=("shut", "ajar"))
    assert cfg.phrases(TASK) == ("open", ("shut", "ajar"))


def test_variants_needing_baselines_refuse_task_without_negatives() -> None:
    bare = TaskDescription(name="bare", goal="to win", positive_phrases=("won",))
    with pytest.raises(ConfigError, match="baseline"):
        ClipRewardConfig(variant="vlmrm").phrases(bare)
    assert ClipRewardConfig(variant="cosine").phrases(bare) == ("won", ())


def test_vlmrm_baseline_is_plain_mean_of_baseline_phrases() -> None:
    """VLM-RM averages the unit baseline embeddings and does not renormalise the mean."""
    scorer = FakeScorer({"g": [1.0, 0.0, 0.0], "b1": [0.0, 1.0, 0.0], "b2": [0.0, 0.0, 1.0]})
    reward = ClipReward(scorer, TASK, ClipRewardConfig(goal_phrase="g", baseline_phrases=("b1", "b2"), alpha=1.0))
    np.testing.assert_allclose(reward.baseline, [0.0, 0.5, 0.5])
    # By hand: d = g - b = (1, -0.5, -0.5), |d|^2 = 1.5. Frame x = b1: (x - g).d = -1.5, so
    # (x - g)P = -d and r = 1 - 1.5 / 2 = 0.25 (a renormalised baseline would give 0.271).
    np.testing.assert_allclose(reward.rewards_from_embeddings(np.array([[0.0, 1.0, 0.0]])), [0.25])


def test_clip_reward_on_tiny_clip_checkpoint(tmp_path, rng: np.random.Generator) -> None:
    """A real (tiny, random, offline) CLIP: rewards agree with the clip backend's own scoring
    (a separate implementation) and with properties of the VLM-RM formula."""
    from rlvlmf.feedback.backends.clip import ClipScorer
    from rlvlmf.testing.tiny_models import build_tiny_clip

    scorer = ClipScorer(str(build_tiny_clip(tmp_path / "clip")), device="cpu", batch_size=4)
    task = TaskDescription(
        name="drawer-open", goal="to open the drawer",
        positive_phrases=("an open drawer",), negative_phrases=("a closed drawer",),
    )  # fmt: skip
    frames = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    frames[3] = frames[0]  # a repeat: served from the cache

    cosine = ClipReward(scorer, task, ClipRewardConfig(variant="cosine"))
    np.testing.assert_allclose(cosine(frames), scorer.scores(frames, task, score="cosine"), atol=1e-5)
    assert cosine.misses == 4 and cosine.hits == 0  # 5 frames, 4 distinct

    p_goal = scorer.scores(frames, task, score="softmax", softmax_temperature=0.05)
    distinct = np.unique(np.round(p_goal, 6))
    beta = float(distinct[len(distinct) // 2 - 1] + distinct[len(distinct) // 2]) / 2  # between two values, no tie
    baumli = ClipReward(scorer, task, ClipRewardConfig(variant="baumli", temperature=0.05, beta=beta))
    np.testing.assert_array_equal(baumli(frames), (p_goal > beta).astype(np.float32))
    assert 0 < baumli(frames).sum() < len(frames)

    # VLM-RM: alpha = 0 is the cosine; at any alpha the goal text's own embedding scores 1
    # and the (single) baseline text's embedding scores cos(goal, baseline), since x - g = -d.
    np.testing.assert_allclose(ClipReward(scorer, task, ClipRewardConfig(alpha=0.0))(frames), cosine(frames), atol=1e-5)
    texts = scorer.embed_texts(["an open drawer", "a closed drawer"]).astype(np.float64)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    for alpha in (0.3, 1.0):
        vlmrm = ClipReward(scorer, task, ClipRewardConfig(alpha=alpha))
        np.testing.assert_allclose(vlmrm.rewards_from_embeddings(texts), [1.0, texts[0] @ texts[1]], atol=1e-6)
