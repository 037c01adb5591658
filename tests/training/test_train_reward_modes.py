"""`rlvlmf train --reward clip` and `--reward code:...` end to end on tiny schedules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.errors import UserError
from rlvlmf.feedback.backends.clip import ClipScorer
from rlvlmf.testing.tiny_models import build_tiny_clip
from rlvlmf.training.builder import build_config, save_config
from rlvlmf.training.loop import Trainer, run_training
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
    # Each step earns the fraction of checks satisfied (0, 0.5 or 1) and nothing else: Pendulum
    # has no success flag, so its own (negative, dense) reward must not leak in. Episode sums
    # are then multiples of 0.5 in [0, 200]; any leaked env reward breaks that.
    assert len(learned) == 2 and any(lr > 0 for lr in learned)
    assert all(0 <= lr <= 200 and abs(2 * lr - round(2 * lr)) < 1e-6 for lr in learned), learned


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
    trainer = Trainer(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    scored_frames: list[np.ndarray] = []
    scored_rewards: list[np.ndarray] = []
    source = trainer.frame_reward

    class Spy:
        needs_frames = source.needs_frames

        def __call__(self, frames: np.ndarray, next_obs: np.ndarray, sparse: np.ndarray) -> np.ndarray:
            rewards = source(frames, next_obs, sparse)
            scored_frames.append(frames.copy())
            scored_rewards.append(np.asarray(rewards))
            return rewards

        def close(self) -> None:
            source.close()

    trainer.frame_reward = Spy()
    save_config(config, tmp_path / "run")
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary.extra["complete"] and summary.queries == 0
    frames, rewards = np.concatenate(scored_frames), np.concatenate(scored_rewards)
    assert len(frames) == 400 and len(np.unique(frames.reshape(400, -1), axis=0)) > 300  # every step's own frame
    # Each reward is the goal phrase's cosine similarity to that frame, computed here by the
    # scorer's own path (not the reward's), and the logged episode sums add them up.
    expected = ClipScorer(str(model)).scores(frames, trainer.task, score="cosine")
    np.testing.assert_allclose(rewards, expected, atol=1e-5)
    assert rewards.std() > 0
    np.testing.assert_allclose(_learned_returns(tmp_path / "run"), [rewards[:200].sum(), rewards[200:].sum()], rtol=1e-4)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["clip"]["variant"] == "cosine"


def test_clip_reward_needs_a_clip_backend(tmp_path: Path) -> None:
    from rlvlmf.errors import ConfigError

    # Refused while the config is built, before a run folder exists.
    with pytest.raises(ConfigError, match="clip:<model"):
        build_config("pendulum", TINY, steps=200, reward="clip", backend="scripted")
