"""Saved simulator states draw the same frame again, in another instance of the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlvlmf.envs import make_env, sim_state


@pytest.mark.parametrize("preset", ["pendulum", "cartpole-swingup", "drawer-open"])
def test_a_restored_state_renders_the_frame_of_its_step(preset: str) -> None:
    live, other = make_env(preset), make_env(preset)
    try:
        assert sim_state.can_restore(live)
        live.reset(seed=1)
        other.reset(seed=2)  # a different episode: everything drawn must come from the state
        episode = sim_state.episode_state(live)
        rng = np.random.default_rng(0)
        saved = []
        for t in range(24):
            live.step(rng.uniform(live.action_space.low, live.action_space.high).astype(np.float32))
            if t % 8 == 7:
                saved.append((sim_state.step_state(live), live.render()))
        assert not np.array_equal(saved[0][1], saved[-1][1])  # the frames do change
        for step, frame in saved:
            sim_state.restore(other, episode, step)
            np.testing.assert_array_equal(other.render(), frame)
    finally:
        live.close()
        other.close()


def test_a_state_of_another_env_is_refused() -> None:
    pendulum, cartpole = make_env("pendulum"), make_env("cartpole-swingup")
    try:
        cartpole.reset(seed=0)
        with pytest.raises(ValueError, match="different env"):
            sim_state.restore(cartpole, sim_state.episode_state(cartpole), np.zeros(3))
    finally:
        pendulum.close()
        cartpole.close()


class _Opaque(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Box(-1, 1, (1,))


def test_an_env_without_a_known_state_cannot_be_restored() -> None:
    env = _Opaque()
    assert not sim_state.can_restore(env)
    with pytest.raises(TypeError, match="cannot save"):
        sim_state.step_state(env)
