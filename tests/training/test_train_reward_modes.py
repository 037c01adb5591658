"""`rlvlmf train --reward clip` and `--reward code:...` end to end on tiny schedules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlvlmf.errors import UserError
from rlvlmf.training.builder import build_config
from rlvlmf.training.loop import run_training
from rlvlmf.testing.tiny_models import build_tiny_clip
from tests.training.test_train import TINY

PENDULUM_PROGRAM = '''
import numpy as np

def subgoal_1_pole_above_horizontal(obs):
    return (obs[:, 0] > 0.0).astype(np.float64)

def goal(obs):
    return (obs[:, 0] > 0.9).astype(np.float64)
'''


def _learned_returns(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open() as handle:
        return [float(r["train/learned_return"]) for r in csv.DictReader(handle) if r["train/learned_return"]]


def test_code_reward_trains_on_sandboxed_program(tmp_path: Path) -> None:
    program = tmp_path / "pendulum_reward.py"
    program.write_text(PENDULUM_PROGRAM)
    config = build_config("pendulum", TINY, steps=400, reward=f"code:{program}")
    summary = run_training(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert summary.extra["complete"] and summary.queries == 0
    learned = _learned_returns(tmp_path / "run")
    # Dense reward = fraction of checks satisfied (0, 0.5 or 1 per step) + sparse env reward
    # (pendulum's own, negative): different from the env return, and not all zero.
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        env_returns = [float(r["train/episode_return"]) for r in csv.DictReader(handle) if r["train/episode_return"]]
    assert len(learned) == 2 and all(lr > er for lr, er in zip(learned, env_returns))


def test_hostile_code_is_rejected_before_training(tmp_path: Path) -> None:
    program = tmp_path / "bad.py"
    program.write_text("import os\n\ndef goal(obs):\n    os.system('touch pwned')\n    return obs[:, 0]\n")
    config = build_config("pendulum", TINY, steps=200, reward=f"code:{program}")
    with pytest.raises(UserError, match="rejected by the sandbox.*os"):
        run_training(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert not list(tmp_path.rglob("pwned"))


def test_clip_reward_scores_every_frame(tmp_path: Path) -> None:
    model = build_tiny_clip(tmp_path / "clip")
    config = build_config("pendulum", [*TINY, "clip.variant=cosine"], steps=400, reward="clip", backend=f"clip:{model}")
    summary = run_training(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert summary.extra["complete"] and summary.queries == 0
    learned = _learned_returns(tmp_path / "run")
    # Cosine similarities of a random tiny CLIP: bounded, and not constant across episodes.
    assert len(learned) == 2 and all(abs(x) <= 200 for x in learned) and learned[0] != learned[1]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["clip"]["variant"] == "cosine"


def test_clip_reward_needs_a_clip_backend(tmp_path: Path) -> None:
    from rlvlmf.errors import ConfigError

    config = build_config("pendulum", TINY, steps=200, reward="clip", backend="scripted")
    with pytest.raises(ConfigError, match="clip:<model"):
        run_training(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
