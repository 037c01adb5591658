"""make_env across the three families: frames, seeding, crops, task text and errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlvlmf.envs import PRESETS, Preset, TaskDescription
from rlvlmf.errors import ConfigError, UnknownNameError

# One cheap spec per family, with options that make the random start matter (none needed now:
# MetaWorld draws its start from the reset seed by default).
FAMILY_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "dmc": ("dmc:cartpole-swingup", {}),
    "gym": ("gym:Pendulum-v1", {}),
    "metaworld": ("metaworld:drawer-open", {}),
}


def rollout(env: gym.Env, seed: int, actions: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Observations and frames (reset frame, then one per action) of one seeded rollout."""
    obs, _ = env.reset(seed=seed)
    observations, frames = [obs], [env.render()]
    for action in actions:
        obs, *_ = env.step(action)
        observations.append(obs)
        frames.append(env.render())
    return np.stack(observations), frames


@pytest.mark.parametrize("family", list(FAMILY_SPECS))
def test_frames_have_the_requested_shape_and_follow_the_state(
    family: str, build: Callable[..., gym.Env], rng: np.random.Generator
) -> None:
    spec, options = FAMILY_SPECS[family]
    env = build(spec, width=48, height=40, **options)
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (40, 48, 3) and first.dtype == np.uint8
    assert first.std() > 0  # a real picture, not a blank buffer
    low, high = env.action_space.low, env.action_space.high
    for _ in range(15):
        env.step(rng.uniform(low, high).astype(np.float32))
    later = env.render()
    assert later.shape == first.shape
    assert np.abs(later.astype(int) - first.astype(int)).sum() > 0


@pytest.mark.parametrize("family", list(FAMILY_SPECS))
def test_seeded_rollouts_repeat_exactly(
    family: str, build: Callable[..., gym.Env], rng: np.random.Generator
) -> None:
    spec, options = FAMILY_SPECS[family]
    env_a = build(spec, width=32, height=32, **options)
    env_b = build(spec, width=32, height=32, **options)
    space = env_a.action_space
    actions = rng.uniform(space.low, space.high, size=(5,) + space.shape).astype(np.float32)
    obs_a, frames_a = rollout(env_a, 7, actions)
    obs_b, frames_b = rollout(env_b, 7, actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    for frame_a, frame_b in zip(frames_a, frames_b):
        np.testing.assert_array_equal(frame_a, frame_b)
    # The seed matters: another seed starts elsewhere.
    other, _ = env_b.reset(seed=8)
    assert not np.array_equal(other, obs_a[0])


def test_dmc_observations_and_actions_are_flat_and_normalised(build: Callable[..., gym.Env]) -> None:
    env = build("dmc:walker-walk", width=16, height=16)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape == (24,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and 0.0 <= reward <= 1.0
    assert not terminated and not truncated and "success" not in info


def test_metaworld_reports_success_and_accepts_v3_names(build: Callable[..., gym.Env]) -> None:
    env = build("metaworld:drawer-open-v3", width=16, height=16, max_episode_steps=3)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (39,)
    assert env.get_wrapper_attr("family_spec") == "metaworld:drawer-open-v3"
    truncated = False
    for _ in range(3):
        _, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
        assert isinstance(info["success"], bool) and reward >= 0.0
    assert truncated and not terminated
    # The goal position is observed (MetaWorld hides it by default).
    assert np.abs(obs[36:39]).sum() > 0


def test_crop_and_frame_size_apply_to_rendered_pixels(build: Callable[..., gym.Env]) -> None:
    full = build("dmc:cartpole-swingup", width=64, height=48)
    cropped = build("dmc:cartpole-swingup", width=64, height=48, crop=(8, 16, 24, 32))
    resized = build("dmc:cartpole-swingup", width=64, height=48, crop="8,16,24,32", frame_size=20)
    for env in (full, cropped, resized):
        env.reset(seed=3)
    whole = full.render()
    np.testing.assert_array_equal(cropped.render(), whole[8:32, 16:48])
    assert resized.render().shape == (20, 20, 3)


def test_gym_mujoco_env_takes_a_camera(build: Callable[..., gym.Env]) -> None:
    default = build("gym:InvertedPendulum-v5", width=32, height=32)
    free = build("gym:InvertedPendulum-v5", width=32, height=32, camera=-1)
    default.reset(seed=0)
    free.reset(seed=0)
    assert default.render().shape == free.render().shape == (32, 32, 3)
    with pytest.raises(UnknownNameError, match="valid cameras"):
        build("gym:InvertedPendulum-v5", camera="nope")


def test_preset_sets_everything_and_options_override(build: Callable[..., gym.Env]) -> None:
    env = build("cartpole-swingup")
    preset = env.get_wrapper_attr("preset")
    assert isinstance(preset, Preset) and preset is PRESETS["cartpole-swingup"]
    assert env.get_wrapper_attr("task") is preset.task
    env.reset(seed=0)
    assert env.render().shape == (preset.vlm_frame_size, preset.vlm_frame_size, 3)
    small = build("cartpole-swingup", frame_size=preset.reward_frame_size)
    small.reset(seed=0)
    assert small.render().shape == (preset.reward_frame_size, preset.reward_frame_size, 3)


def test_family_spec_borrows_the_preset_task_or_builds_a_generic_one(
    build: Callable[..., gym.Env],
) -> None:
    env = build("dmc:cartpole-swingup", width=16, height=16)
    assert env.get_wrapper_attr("task") is PRESETS["cartpole-swingup"].task
    assert env.get_wrapper_attr("preset") is None
    generic = build("dmc:hopper-hop", width=16, height=16).get_wrapper_attr("task")
    assert isinstance(generic, TaskDescription) and "hopper hop" in generic.goal
    assert generic.observation_doc.splitlines()[0].startswith("obs[0:")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_has_a_task_description(name: str) -> None:
    preset = PRESETS[name]
    task = preset.task
    assert task.name == name
    assert task.goal.startswith("to ")
    assert task.positive_phrases and task.negative_phrases
    assert task.observation_doc.count("\n") >= 1
    if preset.crop is not None:
        preset.crop.check_fits(preset.height, preset.width)


def test_paper_goal_sentences() -> None:
    # The paper's wording, with the colours of what these presets render (tests/envs/test_presets.py).
    assert PRESETS["drawer-open"].task.goal == "to open the drawer"
    assert PRESETS["soccer"].task.goal == "to move the soccer ball into the goal"
    assert PRESETS["sweep-into"].task.goal == (
        "to minimize the distance between the brown cube and the hole marked by the blue dot"
    )
    assert PRESETS["cartpole-swingup"].task.goal == "to balance the tan pole on the tan cart to be upright"


@pytest.mark.parametrize(
    ("spec", "options", "error", "hint"),
    [
        ("dmc:cartpole-swingupp", {}, UnknownNameError, "cartpole-swingup"),
        ("dmc:nothing", {}, UnknownNameError, "Valid tasks"),
        ("metaworld:drawer-opne", {}, UnknownNameError, "drawer-open"),
        ("gym:Pendulum-v0", {}, UnknownNameError, "Pendulum-v1"),
        ("atari:pong", {}, UnknownNameError, "dmc, gym, metaworld"),
        ("drawer", {}, UnknownNameError, "drawer-open"),
        ("dmc:cartpole-swingup", {"camera": "fixd"}, UnknownNameError, "'fixed'"),
        ("dmc:cartpole-swingup", {"camera": 9}, UnknownNameError, "out of range"),
        ("metaworld:soccer", {"camera": "corner9"}, UnknownNameError, "corner"),
        ("dmc:cartpole-swingup", {"crop": (0, 0, 500, 10)}, ConfigError, "does not fit"),
        ("dmc:cartpole-swingup", {"crop": (0, 0, 5)}, ConfigError, "four integers"),
        ("dmc:cartpole-swingup", {"action_repeet": 2}, ConfigError, "action_repeat"),
        ("dmc:cartpole-swingup", {"width": 0}, ConfigError, "positive"),
        ("gym:Pendulum-v1", {"camera": "top"}, ConfigError, "no cameras"),
    ],
)
def test_bad_input_raises_a_helpful_error(
    spec: str, options: dict[str, Any], error: type[Exception], hint: str, build: Callable[..., gym.Env]
) -> None:
    with pytest.raises(error, match=hint):
        build(spec, **options)


def test_unclosed_envs_exit_without_gl_errors() -> None:
    # dm_control and MuJoCo tear GL down in their own exit hooks; envs left open must be freed
    # before that, or the interpreter prints pages of EGL/OSMesa errors.
    script = (
        "from rlvlmf.envs import make_env\n"
        "for spec in ('dmc:cartpole-swingup', 'metaworld:soccer'):\n"
        "    env = make_env(spec, width=16, height=16); env.reset(seed=0); env.render()\n"
        "print('rendered')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "rendered"
    assert "Error" not in result.stderr, result.stderr[-2000:]
