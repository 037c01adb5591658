"""Any env as a task: ``--env SPEC --goal TEXT`` (a user's own Gymnasium env included)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlvlmf.cli import main
from rlvlmf.envs import custom_preset, make_env
from rlvlmf.envs.custom import box_spaces
from rlvlmf.errors import ConfigError, UnknownNameError, UserError
from rlvlmf.testing import point_env
from rlvlmf.training.builder import build_config, default_run_name
from rlvlmf.training.config import FAMILY_SCHEDULES, SCHEDULES, TrainConfig

MODULE = "rlvlmf.testing.point_env"


def test_a_users_env_is_made_through_its_module(tmp_path: Path) -> None:
    env = make_env(custom_preset(point_env.SPEC, point_env.GOAL))
    try:
        obs, _ = env.reset(seed=0)
        frame = np.asarray(env.render())
        assert obs.shape == (4,) and frame.shape == (224, 224, 3) and frame.dtype == np.uint8  # resized to 224
        task = env.get_wrapper_attr("task")
        assert task.goal == point_env.GOAL and task.positive_phrases == ("move the blue square onto the red square",)
        assert env.get_wrapper_attr("preset").name == "PointReach-v0"
    finally:
        env.close()


def test_box_spaces_gives_a_trainable_envs_boxes_and_refuses_others() -> None:
    env = make_env(custom_preset(point_env.SPEC, point_env.GOAL))
    discrete = gym.make("PointReachDiscrete-v0")  # registered by importing point_env
    try:
        obs_space, action_space = box_spaces(env)
        assert obs_space.shape == (4,) and action_space.shape == (2,) and (action_space.high == 1).all()
        with pytest.raises(AssertionError, match="check_trainable"):
            box_spaces(discrete)
    finally:
        env.close()
        discrete.close()


def test_custom_preset_refuses_bad_input_in_one_line() -> None:
    with pytest.raises(ConfigError, match="goal sentence .* is empty"):
        custom_preset(point_env.SPEC, "   ")
    with pytest.raises(ConfigError, match="use --preset drawer-open"):
        custom_preset("drawer-open", "to open the drawer")
    with pytest.raises(UnknownNameError, match="bad env spec"):
        custom_preset("atari:Pong", "to win")
    assert custom_preset("dmc:hopper-hop", "to hop", "0").camera == 0
    assert custom_preset("dmc:hopper-hop", "to hop", "side").camera == "side"
    assert custom_preset("metaworld:drawer-open", "to open it").vlm_frame_size == 300


def test_env_config_takes_its_familys_schedule_and_is_saved_whole() -> None:
    config = build_config(env=point_env.SPEC, goal=point_env.GOAL, camera="")
    walker = SCHEDULES[FAMILY_SCHEDULES["gym"]]
    assert config.preset == "" and config.env == point_env.SPEC and config.goal == point_env.GOAL
    assert config.steps == walker["steps"] and config.sac.hidden_sizes == walker["sac"].hidden_sizes
    assert config.reward_model.state_dim == 4 + 2  # obs + action, read from the env
    assert config.task_name == "PointReach-v0" and default_run_name(config).startswith("PointReach-v0-")
    with pytest.raises(ConfigError, match="either a preset or an env"):
        TrainConfig(preset="pendulum", env=point_env.SPEC, goal="to x")
    with pytest.raises(ConfigError, match="needs an env"):
        TrainConfig(preset="")


@pytest.mark.parametrize(
    ("env_id", "message"),
    [("PointReachDiscrete-v0", "Discrete action space; .* needs a continuous Box"),
     ("PointReachNoRender-v0", "cannot render rgb_array frames")],
)
def test_envs_training_cannot_use_are_refused(env_id: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_config(env=f"gym:{MODULE}:{env_id}", goal="to reach the target")


def test_a_missing_module_is_named() -> None:
    with pytest.raises(UnknownNameError, match="cannot import 'no_such_package_xyz'"):
        build_config(env="gym:no_such_package_xyz:Thing-v0", goal="to do it")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--env", f"gym:{MODULE}:PointReachDiscrete-v0", "--goal", "to reach"], "Box action space"),
     (["--env", f"gym:{MODULE}:PointReachNoRender-v0", "--goal", "to reach"], "cannot render rgb_array"),
     (["--env", point_env.SPEC, "--goal", " "], "goal sentence .* is empty"),
     (["--env", point_env.SPEC], "needs --goal"),
     (["--env", point_env.SPEC, "--goal", "x", "--preset", "pendulum"], "alternatives"),
     (["--preset", "pendulum", "--goal", "to swing"], "go with --env")],
)
def test_train_refuses_before_writing_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                args: list[str], message: str) -> None:
    out = tmp_path / "runs"
    code = main(["train", *args, "--out", str(out), "--store", str(tmp_path / "q"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("rlvlmf train: error:")
    assert __import__("re").search(message, err), err
    assert not out.exists() and not (tmp_path / "q").exists()


def test_train_and_resume_a_users_env_from_its_saved_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "point"
    common = ["--store", str(tmp_path / "q"), "--export-dir", str(tmp_path / "rm"), "--no-progress"]
    code = main(["train", "--env", point_env.SPEC, "--goal", point_env.GOAL, "--steps", "300",
                 "--out", str(tmp_path / "runs"), "--name", "point", "--stop-after", "150",
                 "--set", *point_env.TINY_SCHEDULE, *common])
    assert code == 0 and not (run_dir / "summary.json").exists()
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["preset"], saved["env"], saved["goal"]) == ("", point_env.SPEC, point_env.GOAL)
    assert main(["train", "--resume", str(run_dir), *common]) == 0  # nothing but the folder needed
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["labels"] > 0


def test_sweep_runs_an_env_with_its_goal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--env", point_env.SPEC, "--goal", point_env.GOAL, "--seeds", "0-1",
                 "--out", str(tmp_path), "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 2
    # The sweep saves each run's config (env spec and goal in it) and starts the run from that file.
    assert "__PointReach-v0__s0" in lines[0] and " train --config " in lines[0] and "--preset" not in lines[0]
    assert main(["sweep", "--env", point_env.SPEC, "--out", str(tmp_path), "--dry-run"]) == 2
    assert "non-empty --goal" in capsys.readouterr().err
