"""``rlvlmf.load_agent`` and ``rlvlmf evaluate``: a run's policy outside the training loop."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

import rlvlmf
from rlvlmf.cli import main
from rlvlmf.errors import UserError
from rlvlmf.testing import point_env
from rlvlmf.training.builder import build_config
from rlvlmf.training.evaluate import evaluate_policy
from rlvlmf.training.loop import run_training

EVAL_SEED = 10**6  # the loop's evaluation seed for training seed 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agent")
    config = build_config(env=point_env.SPEC, goal=point_env.GOAL, overrides=[*point_env.TINY_SCHEDULE],
                          steps=300, reward="env")
    run_training(config, root / "run", store_dir=root / "q", export_dir=None, progress=False)
    return root / "run"


def test_loaded_policy_replays_the_runs_last_evaluation(run_dir: Path) -> None:
    policy = rlvlmf.load_agent(run_dir)
    assert policy.checkpoint == "step_000000300" and policy.config.env == point_env.SPEC
    env = policy.make_env()
    try:
        result = evaluate_policy(env, policy, 2, seed=EVAL_SEED)
    finally:
        env.close()
    last = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 300 and result.returns == last["returns"]  # same weights, same deterministic actions
    obs = np.zeros(4, np.float32)
    action = policy(obs)
    assert action.shape == (2,) and np.array_equal(action, policy(obs))
    assert policy(np.zeros((3, 4), np.float32)).shape == (3, 2)


def test_a_named_checkpoint_and_bad_input(run_dir: Path) -> None:
    older = rlvlmf.load_agent(run_dir, checkpoint="step_000000200")
    latest = rlvlmf.load_agent(run_dir)
    obs = np.linspace(-1, 1, 4).astype(np.float32)
    assert older.checkpoint == "step_000000200" and not np.array_equal(older(obs), latest(obs))
    with pytest.raises(UserError, match="no checkpoint 'step_9' .* checkpoints: step_"):
        rlvlmf.load_agent(run_dir, checkpoint="step_9")
    with pytest.raises(UserError, match="is not a run folder"):
        rlvlmf.load_agent(run_dir.parent / "nothing")


def test_evaluate_command_prints_cis_and_writes_videos(run_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    gif, mp4 = tmp_path / "first.gif", tmp_path / "first.mp4"
    assert main(["evaluate", str(run_dir), "--episodes", "4", "--video", str(gif), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["checkpoint"] == "step_000000300" and len(record["returns"]) == 4
    assert record["return_ci"][0] <= record["return_mean"] <= record["return_ci"][1]
    assert record["success_rate"] is not None and 0.0 <= record["success_ci"][0] <= record["success_ci"][1] <= 1.0
    frames = imageio.mimread(gif)
    assert len(frames) > 1 and frames[0].shape[:2] == (224, 224)

    assert main(["evaluate", str(run_dir), "--episodes", "2", "--video", str(mp4), "--checkpoint", "step_000000200"]) == 0
    text = capsys.readouterr().out
    assert "step_000000200" in text and "95% CI" in text and "success rate" in text
    assert len(imageio.mimread(mp4, format="FFMPEG")) > 1

    assert main(["evaluate", str(run_dir), "--video", str(tmp_path / "clip.avi")]) == 2
    assert "name a .gif or .mp4 file" in capsys.readouterr().err
