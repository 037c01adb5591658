"""dm_control suite tasks as Gymnasium envs: flat float32 observations, actions in [-1, 1].

Ground truth: the step reward is the suite's reward (in [0, 1] per physics step, summed over
``action_repeat``). The suite has no success signal, so ``info`` has no ``"success"`` key.
An episode ends with ``truncated=True`` at the suite's time limit (1000 control steps for the
usual tasks) and ``terminated=True`` only when a task ends early (discount 0).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlvlmf.envs.gl import ensure_gl_backend
from rlvlmf.envs.mjrender import camera_names, make_rendering_cheap, resolve_camera
from rlvlmf.errors import ConfigError, UnknownNameError, did_you_mean


def suite_tasks() -> list[str]:
    """All dm_control suite tasks as ``"<domain>-<task>"`` names."""
    ensure_gl_backend()
    from dm_control import suite

    return [f"{domain}-{task}" for domain, task in suite.ALL_TASKS]


def _split_name(name: str) -> tuple[str, str]:
    """``"ball_in_cup-catch"`` -> ``("ball_in_cup", "catch")``; raise with close matches."""
    tasks = suite_tasks()
    if name not in tasks:
        raise UnknownNameError(
            f"unknown dm_control task {name!r}.{did_you_mean(name, tasks)} Valid tasks: {', '.join(tasks)}"
        )
    domain, task = name.split("-", 1)
    return domain, task


def observation_layout(spec: dict[str, Any]) -> str:
    """One line per observation field with its slice in the flat vector.

    Args:
        spec: The suite's ``observation_spec()`` (an ordered mapping of name -> array spec).

    Returns:
        Lines like ``"obs[0:3] position"``.
    """
    lines, start = [], 0
    for key, array_spec in spec.items():
        size = int(np.prod(array_spec.shape, dtype=int))
        lines.append(f"obs[{start}:{start + size}] {key}")
        start += size
    return "\n".join(lines)


class DMCEnv(gym.Env):
    """One dm_control suite task behind the Gymnasium 1.x API.

    Frames are drawn only when :meth:`render` is called, by one reused ``dm_control`` camera.
    Shadows and multisampling are switched off before the first frame: with software rendering
    they cost most of the time, and the frames stay readable.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        name: str,
        width: int = 84,
        height: int = 84,
        camera: str | int | None = None,
        action_repeat: int = 1,
        render_mode: str = "rgb_array",
        environment_kwargs: dict[str, Any] | None = None,
    ):
        """Load the task.

        Args:
            name: ``"<domain>-<task>"``, e.g. ``"cartpole-swingup"``.
            width: Rendered width in pixels.
            height: Rendered height in pixels.
            camera: Camera name or id (``-1`` is the free camera); default the model's first.
            action_repeat: Physics control steps per ``step()``; rewards are summed.
            render_mode: Only ``"rgb_array"``.
            environment_kwargs: Passed to ``dm_control.suite.load`` (e.g. ``time_limit``).

        Raises:
            UnknownNameError: Unknown task or camera.
            ConfigError: Bad sizes or action repeat.
        """
        if render_mode != "rgb_array":
            raise ConfigError(f"dm_control envs render only 'rgb_array', got {render_mode!r}")
        if action_repeat < 1:
            raise ConfigError(f"action_repeat must be >= 1, got {action_repeat}")
        domain, task = _split_name(name)
        from dm_control import suite

        self._env = suite.load(domain, task, environment_kwargs=environment_kwargs)
        physics = self._env.physics
        self.render_mode = render_mode
        self.width, self.height = width, height
        self.action_repeat = action_repeat
        names = camera_names(physics.model.ptr)
        self.camera_id = resolve_camera(camera, names, default=0 if names else -1)
        make_rendering_cheap(physics.model.ptr, width, height)
        self._camera: Any = None

        obs_spec = self._env.observation_spec()
        self.observation_layout = observation_layout(obs_spec)
        size = sum(int(np.prod(s.shape, dtype=int)) for s in obs_spec.values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        action_spec = self._env.action_spec()
        self._action_low = np.asarray(action_spec.minimum, dtype=np.float64)
        self._action_high = np.asarray(action_spec.maximum, dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, action_spec.shape, np.float32)

    @staticmethod
    def _flatten(observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate(
            [np.asarray(value, dtype=np.float32).ravel() for value in observation.values()]
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a seed fixes the task's random initial state."""
        super().reset(seed=seed)
        if seed is not None:
            # The suite draws initial states from task.random; reseed it from our generator.
            self._env.task._random = np.random.RandomState(int(self.np_random.integers(2**31)))
        time_step = self._env.reset()
        return self._flatten(time_step.observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (in [-1, 1]) for ``action_repeat`` control steps."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(scaled)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        return self._flatten(time_step.observation), reward, terminated, truncated, {}

    def render(self) -> np.ndarray:
        """Draw the current state.

        Returns:
            ``(height, width, 3)`` uint8 image.
        """
        if self._camera is None:
            from dm_control.mujoco import Camera

            self._camera = Camera(self._env.physics, self.height, self.width, self.camera_id)
        # The camera returns a view of its own buffer, overwritten by the next render.
        return self._camera.render().copy()

    def close(self) -> None:
        """Free the renderer and the physics' GL context (EGL complains at exit otherwise)."""
        self._camera = None
        self._env.physics.free()
        self._env.close()


def make_dmc_env(
    name: str,
    width: int,
    height: int,
    camera: str | int | None = None,
    max_episode_steps: int | None = None,
    action_repeat: int = 1,
) -> gym.Env:
    """Make a dm_control suite task (see :class:`DMCEnv`).

    Args:
        name: ``"<domain>-<task>"``.
        width: Rendered width in pixels.
        height: Rendered height in pixels.
        camera: Camera name or id; default the model's first camera.
        max_episode_steps: Cut episodes after this many ``step()`` calls (the suite's own time
            limit still applies).
        action_repeat: Control steps per ``step()``.

    Returns:
        The env; ``render()`` gives ``(height, width, 3)`` uint8 frames.
    """
    env: gym.Env = DMCEnv(name, width, height, camera, action_repeat)
    if max_episode_steps is not None:
        if max_episode_steps <= 0:
            raise ConfigError(f"max_episode_steps must be positive, got {max_episode_steps}")
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    return env
