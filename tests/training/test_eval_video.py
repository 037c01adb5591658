"""Evaluation videos play at their intended speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rlvlmf.training.evaluate import VIDEO_FPS, write_video


def test_gif_frames_last_one_fifteenth_of_a_second(tmp_path: Path) -> None:
    frames = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(4)]
    write_video(tmp_path / "eval.gif", frames)
    with Image.open(tmp_path / "eval.gif") as gif:
        assert gif.n_frames == 4
        # GIF stores centiseconds: 1000/15 ms is written as 60 or 70 ms, never 0 (as fast as a viewer can).
        assert 60 <= gif.info["duration"] <= 70 and VIDEO_FPS == 15
