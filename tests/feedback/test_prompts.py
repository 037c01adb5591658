"""RL-VLM-F prompt templates, their versions, and the frame encodings they carry."""

from __future__ import annotations

import numpy as np
import pytest

from rlvlmf.feedback import prompts
from rlvlmf.feedback.images import decode_png, encode_png, side_by_side, to_base64_png, to_data_url

GOAL = "to open the drawer"


@pytest.fixture
def frames(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_questions_carry_the_goal_sentence() -> None:
    text = prompts.questions(GOAL)
    assert "The goal is to open the drawer." in text
    assert "What is shown in Image 1?" in text and "What is shown in Image 2?" in text


@pytest.mark.parametrize("goal", ["to open the drawer.", "  to open the drawer  ", "to open the drawer. "])
def test_goal_sentence_is_normalised(goal: str) -> None:
    assert prompts.questions(goal) == prompts.questions(GOAL)


def test_stage1_shows_both_frames_in_order(frames: tuple[np.ndarray, np.ndarray]) -> None:
    first, second = frames
    parts = prompts.stage1_parts(first, second, GOAL)
    images = [p for p in parts if isinstance(p, np.ndarray)]
    assert len(images) == 2 and images[0] is first and images[1] is second
    # Each image is preceded by its name, and the questions come after both.
    kinds = ["image" if isinstance(p, np.ndarray) else p for p in parts]
    assert kinds[1:] == ["Image 1:", "image", "Image 2:", "image", prompts.questions(GOAL)]


def test_stage2_is_text_only_and_asks_for_a_single_label() -> None:
    analysis = "Image 2 shows the drawer further open."
    text = prompts.stage2_text(analysis, GOAL)
    assert analysis in text and GOAL in text
    assert "Is the goal better achieved in Image 1 or Image 2?" in text
    for choice in prompts.LABEL_CHOICES:
        assert choice in text


def test_one_stage_asks_everything_at_once(frames: tuple[np.ndarray, np.ndarray]) -> None:
    parts = prompts.one_stage_parts(*frames, GOAL)
    assert sum(isinstance(p, np.ndarray) for p in parts) == 2
    assert GOAL in parts[-1] and "Answer: -1" in parts[-1]


def test_composite_sends_one_labelled_picture(frames: tuple[np.ndarray, np.ndarray]) -> None:
    first, second = frames
    parts = prompts.stage1_parts(first, second, GOAL, composite=True)
    images = [p for p in parts if isinstance(p, np.ndarray)]
    assert len(images) == 1
    np.testing.assert_array_equal(images[0], side_by_side(first, second, labels=prompts.IMAGE_LABELS))
    assert "left" in parts[0] and "right" in parts[0]


def test_template_versions_differ_by_protocol_and_follow_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {prompts.template_version(m, c) for m in ("two-stage", "one-stage") for c in (False, True)}
    assert len(versions) == 4
    before = prompts.template_version("two-stage", False)
    assert prompts.template_version("two-stage", False) == before  # stable
    monkeypatch.setattr(prompts, "STAGE2", prompts.STAGE2 + " Think carefully.")
    assert prompts.template_version("two-stage", False) != before
    assert before.startswith("two-stage-")


# --- images ------------------------------------------------------------------------------


def test_png_round_trip_is_exact_and_deterministic(frames: tuple[np.ndarray, np.ndarray]) -> None:
    first, _ = frames
    data = encode_png(first)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert encode_png(first.copy()) == data
    np.testing.assert_array_equal(decode_png(data), first)


def test_non_contiguous_frames_encode_like_their_copy(frames: tuple[np.ndarray, np.ndarray]) -> None:
    first, _ = frames
    view = first[:, ::-1]
    assert encode_png(view) == encode_png(np.ascontiguousarray(view))


def test_data_url_holds_the_png(frames: tuple[np.ndarray, np.ndarray]) -> None:
    import base64

    first, _ = frames
    url = to_data_url(first)
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == encode_png(first)
    assert url.endswith(to_base64_png(first))


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)])
def test_bad_frames_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encode_png(bad)


def test_side_by_side_places_both_frames(rng: np.random.Generator) -> None:
    first = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    second = rng.integers(0, 256, (26, 14, 3), dtype=np.uint8)
    plain = side_by_side(first, second, labels=None)
    assert plain.shape == (26, 30 + 8 + 14, 3)
    np.testing.assert_array_equal(plain[:20, :30], first)
    np.testing.assert_array_equal(plain[:, -14:], second)
    labelled = side_by_side(first, second)
    top = labelled.shape[0] - 26
    assert top > 0
    np.testing.assert_array_equal(labelled[top : top + 20, :30], first)
    assert (labelled[:top] < 255).any(), "the label bar should contain drawn text"
    np.testing.assert_array_equal(side_by_side(first, second), labelled)
