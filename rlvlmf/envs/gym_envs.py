"""Any registered Gymnasium env that renders ``rgb_array`` frames.

MuJoCo envs render at the requested size and camera directly. Other envs (classic control,
Box2D) draw at their native size; their frames are resized to ``height`` x ``width`` and they
have no cameras. Ground truth is the env's own step reward; ``info`` is passed through as is
(no ``"success"`` key is added, since Gymnasium envs have no common success signal). A bounded
``Box`` action space is rescaled to [-1, 1] (see :func:`unit_box_actions`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import gymnasium as gym
import numpy as np

from rlvlmf.envs.frames import resize_frame
from rlvlmf.envs.gl import ensure_gl_backend
from rlvlmf.envs.mjrender import CameraSpec, camera_names, make_rendering_cheap, resolve_camera
from rlvlmf.errors import ConfigError, MissingDependencyError, UnknownNameError, did_you_mean


class _ResizeRender(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Resizes native-size frames to ``(height, width)``."""

    def __init__(self, env: gym.Env, width: int, height: int):
        # Recorded so that ``env.spec.make()`` (and Gymnasium's env checker) can rebuild it.
        gym.utils.RecordConstructorArgs.__init__(self, width=width, height=height)
        super().__init__(env)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}  # it resizes arrays only
        self._size = (height, width)

    def render(self) -> np.ndarray:
        return resize_frame(np.asarray(self.env.render()), self._size)


def unit_box_actions(env: gym.Env) -> gym.Env:
    """Let the agent act in [-1, 1], as in the dm_control and MetaWorld families.

    SAC's tanh policy outputs [-1, 1]; an env with another range (Pendulum's torque is
    [-2, 2]) would get only part of its range from the policy, while seed-phase actions drawn
    from the native space cover all of it. A bounded ``Box`` action space is mapped affinely
    onto [-1, 1]; other spaces are left as they are.

    Args:
        env: A Gymnasium env.

    Returns:
        ``env``, or ``env`` wrapped in ``gymnasium.wrappers.RescaleAction``.
    """
    space = env.action_space
    if not isinstance(space, gym.spaces.Box) or not space.is_bounded("both"):
        return env
    if np.all(space.low == -1.0) and np.all(space.high == 1.0):
        return env
    return gym.wrappers.RescaleAction(env, min_action=np.float32(-1.0), max_action=np.float32(1.0))


def _is_mujoco_env(env_id: str) -> bool:
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

    entry_point = gym.spec(env_id).entry_point
    # A user's registration may give the class itself rather than a "module:Class" string.
    creator = gym.envs.registration.load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    return isinstance(creator, type) and issubclass(creator, MujocoEnv)


def _import_registering_module(env_id: str) -> str:
    """Gymnasium's ``module:EnvId`` form: import ``module`` (which registers the id) and
    return the bare id.

    Raises:
        UnknownNameError: The module cannot be imported.
    """
    module, sep, bare_id = env_id.rpartition(":")
    if not sep:
        return env_id
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise UnknownNameError(
            f"cannot import {module!r} for Gymnasium env {env_id!r} ({exc}); install it or put it on PYTHONPATH"
        ) from exc
    return bare_id


def make_gym_env(
    env_id: str,
    width: int,
    height: int,
    camera: CameraSpec = None,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Make ``env_id`` with ``render_mode="rgb_array"``.

    Args:
        env_id: A registered Gymnasium id, e.g. ``"Pendulum-v1"``, or ``"module:EnvId-v0"``
            for an env that ``module`` registers when imported (a user's own package).
        width: Rendered width in pixels.
        height: Rendered height in pixels.
        camera: MuJoCo camera name or id (MuJoCo envs only); default the env's own view.
        max_episode_steps: Overrides the registered time limit.
        **kwargs: Passed to ``gymnasium.make``.

    Returns:
        The env; ``render()`` gives ``(height, width, 3)`` uint8 frames.

    Raises:
        UnknownNameError: Unknown id or camera.
        ConfigError: A camera for an env without cameras.
        MissingDependencyError: The env needs a package that is not installed (e.g. pygame).
    """
    env_id = _import_registering_module(env_id)
    if env_id not in gym.registry:
        raise UnknownNameError(
            f"unknown Gymnasium id {env_id!r}.{did_you_mean(env_id, gym.registry)} See gymnasium.pprint_registry() for all ids."
        )
    mujoco_based = _is_mujoco_env(env_id)
    if mujoco_based:
        ensure_gl_backend()
    if camera is not None and not mujoco_based:
        raise ConfigError(f"{env_id} is not a MuJoCo env and has no cameras; drop the camera option")
    if mujoco_based:
        kwargs.update(width=width, height=height)
    else:
        # pygame-drawn envs call pygame.init(), whose audio and video start-up print errors on
        # headless machines; offscreen rgb_array frames need neither a sound card nor a display.
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        env = gym.make(env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise MissingDependencyError(f"{env_id} needs a package that is missing: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"bad option for {env_id}: {exc}") from exc
    env = unit_box_actions(env)
    if not mujoco_based:
        return _ResizeRender(env, width, height)
    model = env.unwrapped.model  # type: ignore[attr-defined]
    make_rendering_cheap(model, width, height)
    if camera is not None:
        renderer = env.unwrapped.mujoco_renderer  # type: ignore[attr-defined]
        # Gymnasium silently falls back to the free camera on an unknown name; check it here.
        renderer.camera_id = resolve_camera(camera, camera_names(model))
    return env
