"""The clip backend and ClipScorer on tiny random CLIP and SigLIP checkpoints (built offline)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, MissingDependencyError, UserError
from rlvlmf.feedback.backends.clip import ClipBackend, ClipConfig, preference_from_scores
from rlvlmf.feedback.base import FramePair, Label
from rlvlmf.feedback.labeler import Labeler, LabelerConfig
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing.tiny_models import build_tiny_clip, build_tiny_siglip

os.environ["HF_HUB_OFFLINE"] = "1"

TASK = TaskDescription(
    name="drawer-open", goal="to open the drawer",
    positive_phrases=("a drawer that is fully open", "an open drawer"),
    negative_phrases=("a closed drawer", "a robot arm"),
)
GOAL_ONLY = TaskDescription(name="goal-only", goal="to open the drawer", positive_phrases=("an open drawer",))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip-models")
    return {"clip": build_tiny_clip(root / "clip"), "siglip": build_tiny_siglip(root / "siglip")}


@pytest.fixture(scope="session", params=["clip", "siglip"])
def backend(request: pytest.FixtureRequest, checkpoints: dict[str, Path]) -> ClipBackend:
    return ClipBackend.from_spec(str(checkpoints[request.param]), None, device="cpu", batch_size="3")


def _frames(rng: np.random.Generator, n: int, size: int = 40) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size + 8, 3), dtype=np.uint8)


def test_from_spec_parses_string_options_and_loads_lazily(checkpoints: dict[str, Path]) -> None:
    backend = ClipBackend.from_spec(str(checkpoints["clip"]), None, tie_margin="0.5", score="cosine", max_batch="8")
    assert backend.config == ClipConfig(tie_margin=0.5, score="cosine", max_batch=8)
    assert backend.max_batch == 8 and backend._scorer is None
    assert backend.identity()["model"] == str(checkpoints["clip"])


@pytest.mark.parametrize(
    ("options", "match"),
    [({"score": "dot"}, "not one of"), ({"tie_margin": "-1"}, "tie_margin"), ({"device": "gpu"}, "unknown device"),
     ({"dtype": "int8"}, "dtype"), ({"colour": "red"}, "unknown field")],
)
def test_bad_options_are_config_errors(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ClipBackend.from_spec("some/model", None, **options)


def test_url_and_missing_model_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no URL"):
        ClipBackend.from_spec("m", "http://localhost:1")
    with pytest.raises(UserError, match="cannot load"):
        ClipBackend.from_spec(str(tmp_path / "nowhere"), None, device="cpu").scorer  # noqa: B018


def test_embeddings_are_unit_norm_and_independent_of_batching(backend: ClipBackend, rng: np.random.Generator) -> None:
    scorer = backend.scorer
    frames = _frames(rng, 7)
    emb = scorer.embed_images(frames)
    assert emb.shape[0] == 7 and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    # batch_size=3 split the 7 frames in three forward passes; one frame alone must agree.
    np.testing.assert_allclose(scorer.embed_images(frames[4:5]), emb[4:5], atol=1e-5)

    texts = scorer.embed_texts(["an open drawer", "a much longer description of a closed wooden drawer"])
    assert texts.shape == (2, emb.shape[1])
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scorer.embed_texts(["an open drawer"])[0], texts[0], atol=1e-5)


def test_scores_match_their_definitions(backend: ClipBackend, rng: np.random.Generator) -> None:
    scorer = backend.scorer
    frames = _frames(rng, 5)
    image_emb = scorer.embed_images(frames)
    phrases = [TASK.positive_phrases[0], *TASK.negative_phrases]
    cosine = image_emb @ scorer.embed_texts(phrases).T

    np.testing.assert_allclose(scorer.scores(frames, TASK, score="cosine"), cosine[:, 0], atol=1e-5)
    logits = cosine / 0.2
    softmax = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(scorer.scores(frames, TASK, score="softmax", softmax_temperature=0.2), softmax, atol=1e-5)
    # auto = softmax when negatives exist (with the model's own logit scale), cosine otherwise.
    auto = scorer.scores(frames, TASK)
    assert np.all((auto >= 0) & (auto <= 1))
    np.testing.assert_allclose(auto, scorer.scores(frames, TASK, score="softmax", softmax_temperature=1 / scorer.logit_scale))
    np.testing.assert_allclose(scorer.scores(frames, GOAL_ONLY), image_emb @ scorer.embed_texts(["an open drawer"])[0], atol=1e-5)
    with pytest.raises(UserError, match="negative phrases"):
        scorer.scores(frames, GOAL_ONLY, score="softmax")


def test_label_follows_score_difference_and_is_antisymmetric(backend: ClipBackend, rng: np.random.Generator) -> None:
    frames = _frames(rng, 12)
    pairs = [FramePair(frames[i], frames[i + 6]) for i in range(6)]
    answers = backend.label(pairs, TASK)
    scores = backend.scorer.scores(frames, TASK)
    assert len(answers) == 6
    for i, answer in enumerate(answers):
        diff = scores[i + 6] - scores[i]
        assert answer.label == (Label.SECOND if diff > 0 else Label.FIRST)
        assert answer.prob_second == pytest.approx(1 / (1 + np.exp(-diff / backend.config.prob_temperature)), abs=1e-4)
        assert answer.stages and answer.abstain_reason is None and answer.cost_usd == 0
    swapped = asyncio.run(backend.alabel([p.swapped() for p in pairs], TASK))
    for answer, flipped in zip(answers, swapped):
        assert flipped.label == 1 - answer.label
        assert flipped.prob_second == pytest.approx(1 - answer.prob_second, abs=1e-4)


def test_identical_frames_and_tie_margin_give_no_preference(checkpoints: dict[str, Path], rng: np.random.Generator) -> None:
    frames = _frames(rng, 2)
    strict = ClipBackend.from_spec(str(checkpoints["clip"]), None, device="cpu")
    same = strict.label([FramePair(frames[0], frames[0].copy())], TASK)[0]
    assert same.label == Label.NONE and same.prob_second == pytest.approx(0.5)
    scores = strict.scorer.scores(frames, TASK)
    margin = abs(scores[1] - scores[0])
    lenient = ClipBackend.from_spec(str(checkpoints["clip"]), None, device="cpu", tie_margin=str(margin * 1.01))
    assert lenient.label([FramePair(frames[0], frames[1])], TASK)[0].label == Label.NONE
    assert strict.label([FramePair(frames[0], frames[1])], TASK)[0].label != Label.NONE


def test_text_embeddings_are_cached_per_phrase_set(backend: ClipBackend, rng: np.random.Generator) -> None:
    scorer = backend.scorer
    scorer._text_cache.clear()
    frames = _frames(rng, 2)
    scorer.scores(frames, TASK)
    scorer.scores(frames, TASK)
    assert list(scorer._text_cache) == [(TASK.positive_phrases[0], *TASK.negative_phrases)]


def test_preference_from_scores_is_pure() -> None:
    assert preference_from_scores(0.2, 0.3, 0.0, 0.05)[0] == Label.SECOND
    assert preference_from_scores(0.3, 0.2, 0.0, 0.05)[0] == Label.FIRST
    assert preference_from_scores(0.3, 0.2, 0.1, 0.05)[0] == Label.NONE
    label, prob = preference_from_scores(0.0, 1000.0, 0.0, 0.01)
    assert label == Label.SECOND and prob == 1.0


def test_scorer_rejects_non_uint8_frames(backend: ClipBackend) -> None:
    with pytest.raises(ValueError, match="uint8"):
        backend.scorer.embed_images(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_siglip_checkpoint_needing_sentencepiece_says_so(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    # Real SigLIP checkpoints name the SentencePiece tokenizer, which this environment lacks.
    checkpoint = tmp_path / "siglip-sp"
    shutil.copytree(checkpoints["siglip"], checkpoint)
    config_path = checkpoint / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "tokenizer_class": "SiglipTokenizer"}))
    with pytest.raises(MissingDependencyError, match="pip install sentencepiece"):
        ClipBackend.from_spec(str(checkpoint), None, device="cpu").scorer  # noqa: B018


def test_labeler_and_store_reuse_clip_answers(checkpoints: dict[str, Path], rng: np.random.Generator, tmp_path: Path) -> None:
    backend = ClipBackend.from_spec(str(checkpoints["clip"]), None, device="cpu", max_batch="4")
    frames = _frames(rng, 10)
    pairs = [FramePair(frames[i], frames[i + 5]) for i in range(5)]
    labeler = Labeler(backend, TASK, QueryStore(tmp_path / "queries"), LabelerConfig(progress=False), run_id="t", rng=rng)
    try:
        first = labeler.label(pairs)
        again = labeler.label(pairs)
    finally:
        labeler.close()
    direct = backend.label(pairs, TASK)
    assert [q.label for q in first] == [a.label for a in direct]
    assert all(not q.from_store for q in first) and all(q.from_store for q in again)
    assert [q.answer.prob_second for q in again] == pytest.approx([a.prob_second for a in direct], abs=1e-6)
