"""Every family acts in [-1, 1] (SAC's tanh range) and passes Gymnasium's own env checker."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlvlmf.envs.dmc import DMCEnv

# One spec per family, each with its native action range: cartpole's motor [-1, 1], Pendulum's
# torque [-2, 2], InvertedPendulum's force [-3, 3] (MuJoCo), the Sawyer arm's [-1, 1].
ACTION_SPECS = ["dmc:cartpole-swingup", "gym:Pendulum-v1", "gym:InvertedPendulum-v5", "metaworld:drawer-open"]


def spy_on_native_actions(env: gym.Env) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Record the actions the simulator itself receives.

    Returns:
        The list each native action is appended to, and the native range's low and high ends.
    """
    unwrapped = env.unwrapped
    native: Any = unwrapped
    if isinstance(unwrapped, DMCEnv):
        # Our dm_control env scales inside step(); the suite's own env gets the native action.
        native = unwrapped._env
        spec = native.action_spec()
        low, high = np.asarray(spec.minimum), np.asarray(spec.maximum)
    else:
        low, high = unwrapped.action_space.low, unwrapped.action_space.high
    received: list[np.ndarray] = []
    step = native.step

    def recording_step(action: np.ndarray) -> Any:
        received.append(np.array(action, dtype=np.float64))
        return step(action)

    native.step = recording_step  # the instance attribute shadows the class's method
    return received, low, high


@pytest.mark.parametrize("spec", ACTION_SPECS)
def test_agent_actions_in_unit_box_reach_both_ends_of_the_native_range(
    spec: str, build: Callable[..., gym.Env]
) -> None:
    env = build(spec, width=16, height=16)
    space = env.action_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, -1.0)
    np.testing.assert_array_equal(space.high, 1.0)
    received, low, high = spy_on_native_actions(env)
    for action, expected in ((-1.0, low), (1.0, high), (0.0, (low + high) / 2)):
        env.reset(seed=0)
        env.step(np.full(space.shape, action, dtype=np.float32))
        np.testing.assert_allclose(received[-1], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "spec", ["dmc:cartpole-swingup", "gym:Pendulum-v1", "gym:InvertedPendulum-v5", "metaworld:drawer-open", "pendulum"]
)
def test_every_family_passes_gymnasiums_env_checker(spec: str, build: Callable[..., gym.Env]) -> None:
    # A preset adds the crop/resize wrapper; a spec'd Gymnasium env must be re-creatable from
    # env.spec, which needs every wrapper of ours to record its constructor arguments.
    size = {} if ":" not in spec else {"width": 32, "height": 32}
    env = build(spec, **size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=False)
    messages = [str(warning.message) for warning in caught]
    assert not [m for m in messages if "action space" in m], messages
    if env.spec is not None:
        remade = env.spec.make()
        try:
            assert remade.action_space == env.action_space
            assert remade.get_wrapper_attr("task") == env.get_wrapper_attr("task")
        finally:
            remade.close()
