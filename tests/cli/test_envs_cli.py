"""``rlvlmf envs``: listing, previews and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlvlmf.cli import main
from rlvlmf.envs import PRESETS


def test_envs_lists_every_preset_with_goal_and_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(PRESETS)
    for line, preset in zip(out, PRESETS.values()):
        assert line.startswith(preset.name)
        assert preset.spec in line and preset.task.goal in line
        assert f"vlm {preset.vlm_frame_size}" in line


def test_envs_preview_writes_reset_and_later_frames(tmp_path: Path) -> None:
    names = ["cartpole-swingup", "pendulum"]
    assert main(["envs", "--preview", str(tmp_path), "--presets", ",".join(names)]) == 0
    for name in names:
        image = np.asarray(Image.open(tmp_path / f"{name}.png"))
        size = PRESETS[name].vlm_frame_size
        assert image.shape == (size, 2 * size, 3)
        reset_half, later_half = image[:, :size], image[:, size:]
        assert not np.array_equal(reset_half, later_half)  # random actions moved something
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in names)


def test_envs_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs", "--presets", "cartpole,pendulum"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown preset 'cartpole'" in err and "cartpole-swingup" in err


def test_envs_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rlvlmf", "envs"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "drawer-open" in result.stdout and "to open the drawer" in result.stdout
