"""Each preset's goal sentence and CLIP phrases name only colours that its frames show."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv

from rlvlmf.envs import PRESETS

# (hue in degrees, saturation, value) ranges, each (low, high); a colour may have several.
HSVRange = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
COLOURS: dict[str, list[HSVRange]] = {
    "red": [((0, 15), (0.4, 1), (0.35, 1)), ((345, 360), (0.4, 1), (0.35, 1))],
    "orange": [((15, 40), (0.65, 1), (0.6, 1))],
    "tan": [((20, 45), (0.2, 0.65), (0.6, 1))],
    "brown": [((10, 45), (0.3, 1), (0.15, 0.6))],
    "yellow": [((45, 65), (0.4, 1), (0.5, 1))],
    "green": [((75, 165), (0.25, 1), (0.25, 1))],
    "blue": [((200, 250), (0.5, 1), (0.3, 1))],
    "purple": [((260, 300), (0.3, 1), (0.25, 1))],
    "pink": [((300, 345), (0.25, 1), (0.5, 1))],
    "black": [((0, 360), (0, 0.5), (0, 0.15))],
    "white": [((0, 360), (0, 0.1), (0.85, 1))],
    "grey": [((0, 360), (0, 0.1), (0.25, 0.85))],
    "gray": [((0, 360), (0, 0.1), (0.25, 0.85))],
}
MIN_SHARE = 0.001
"""A named colour must cover at least this share of the frame's pixels (0.1%: 40 px at 200x200)."""


def colour_share(frame: np.ndarray, colour: str) -> float:
    """Share of ``frame``'s pixels inside ``colour``'s HSV ranges."""
    hsv = rgb_to_hsv(frame / 255.0)
    hue, sat, val = hsv[..., 0] * 360, hsv[..., 1], hsv[..., 2]
    inside = np.zeros(frame.shape[:2], dtype=bool)
    for (h0, h1), (s0, s1), (v0, v1) in COLOURS[colour]:
        inside |= (hue >= h0) & (hue <= h1) & (sat >= s0) & (sat <= s1) & (val >= v0) & (val <= v1)
    return float(inside.mean())


def missing_colours(text: str, frame: np.ndarray) -> list[str]:
    """Colour words of ``text`` with (almost) no pixels of that colour in ``frame``."""
    named = re.findall(rf"\b({'|'.join(COLOURS)})\b", text.lower())
    return sorted({word for word in named if colour_share(frame, word) < MIN_SHARE})


@pytest.fixture(scope="module")
def reset_frames() -> dict[str, np.ndarray]:
    """Each preset's first frame after ``reset(seed=0)``, as a VLM sees it."""
    from rlvlmf.envs import make_env

    frames = {}
    for name in PRESETS:
        env = make_env(name)
        try:
            env.reset(seed=0)
            frames[name] = env.render()
        finally:
            env.close()
    return frames


@pytest.mark.parametrize("name", list(PRESETS))
def test_colours_named_in_a_presets_text_are_in_its_frame(name: str, reset_frames: dict[str, np.ndarray]) -> None:
    task = PRESETS[name].task
    for text in (task.goal, *task.positive_phrases, *task.negative_phrases):
        assert not missing_colours(text, reset_frames[name]), f"{name}: {text!r} names a colour not rendered"


def test_the_colour_check_rejects_the_papers_pygame_and_v2_colours(reset_frames: dict[str, np.ndarray]) -> None:
    # The paper's sentences describe other renderings (a black cart, a green cube); here the
    # cart is tan and the cube brown.
    paper_cartpole = "to balance the brown pole on the black cart to be upright"
    assert missing_colours(paper_cartpole, reset_frames["cartpole-swingup"]) == ["black", "brown"]
    paper_sweep = "to minimize the distance between the green cube and the hole"
    assert missing_colours(paper_sweep, reset_frames["sweep-into"]) == ["green"]
    # Some preset names colours at all, so the per-preset test checks something.
    assert any(
        re.search(rf"\b({'|'.join(COLOURS)})\b", preset.task.goal) for preset in PRESETS.values()
    )

