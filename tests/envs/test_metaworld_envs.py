"""MetaWorld starts: a fresh object/goal position per reset seed, as the reference trains and evaluates."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from rlvlmf.training.evaluate import evaluate_policy

OBJECT = slice(4, 7)
"""obs[4:7]: the first object's position."""


def test_reset_seed_draws_the_object_position_by_default(build: Callable[..., gym.Env]) -> None:
    env = build("metaworld:soccer", width=16, height=16)
    starts = {seed: env.reset(seed=seed)[0] for seed in range(4)}
    positions = {tuple(np.round(obs[OBJECT], 6)) for obs in starts.values()}
    assert len(positions) == len(starts)  # every seed puts the ball somewhere else
    again, _ = env.reset(seed=2)
    np.testing.assert_array_equal(again, starts[2])  # and the same seed in the same place
    other = build("metaworld:soccer", width=16, height=16)
    np.testing.assert_array_equal(other.reset(seed=2)[0], starts[2])  # in any env instance


def test_fixed_start_when_random_init_is_off(build: Callable[..., gym.Env]) -> None:
    env = build("metaworld:soccer", width=16, height=16, random_init=False)
    first, _ = env.reset(seed=1)
    second, _ = env.reset(seed=2)
    np.testing.assert_array_equal(first, second)
    elsewhere = build("metaworld:soccer", width=16, height=16, random_init=False, task_seed=1)
    assert not np.array_equal(elsewhere.reset(seed=1)[0][OBJECT], first[OBJECT])


def test_evaluation_episodes_start_apart_and_report_a_success_rate(build: Callable[..., gym.Env]) -> None:
    env = build("metaworld:drawer-open", width=16, height=16, max_episode_steps=3)
    result = evaluate_policy(env, lambda obs: np.zeros(4, np.float32), 10, seed=0)
    assert len(set(result.returns)) == 10, result.returns  # ten different episodes, not one ten times
    assert result.success_rate is not None and 0.0 <= result.success_rate <= 1.0


def test_family_spec_without_a_camera_uses_the_corner_view(build: Callable[..., gym.Env]) -> None:
    # make_env passes camera=None when none is given; that must mean MetaWorld's default view.
    frames = []
    for camera in (None, "corner"):
        env = build("metaworld:soccer", width=32, height=32, camera=camera)
        env.reset(seed=0)
        frames.append(env.render())
    np.testing.assert_array_equal(frames[0], frames[1])
