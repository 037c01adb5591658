"""MetaWorld 3 manipulation tasks (Sawyer arm) with the goal position in the observation.

Ground truth: the step reward is MetaWorld's shaped reward (v2 reward functions, 0..10 per
step) and ``info["success"]`` is a ``bool`` saying whether the task is solved in that step.
Observations are 39 float32 numbers (hand, gripper, objects, the previous step's copy, goal).

By default (``random_init=True``) each ``reset(seed=...)`` draws new object and goal positions
from that seed, as the RL-VLM-F reference code trains and evaluates: the same seed gives the
same start, other seeds other starts, and a reset without a seed continues the env's generator.
With ``random_init=False`` every episode starts from the positions ``task_seed`` picks.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlvlmf.envs.gl import ensure_gl_backend
from rlvlmf.envs.mjrender import (
    CameraSpec,
    camera_is_upside_down,
    camera_names,
    make_rendering_cheap,
    resolve_camera,
)
from rlvlmf.errors import ConfigError, UnknownNameError, did_you_mean

MAX_PATH_LENGTH = 500
"""MetaWorld's own episode length."""
DEFAULT_CAMERA = "corner"
"""The view of the RL-VLM-F presets; MuJoCo's free camera would look at the arm from behind."""

OBSERVATION_DOC = "\n".join(
    [
        "obs[0:3] end-effector (hand) position x, y, z in metres",
        "obs[3] gripper opening (distance between the fingers, normalised)",
        "obs[4:7] first object position",
        "obs[7:11] first object orientation quaternion",
        "obs[11:14] second object position (zeros if the task has one object)",
        "obs[14:18] second object orientation quaternion",
        "obs[18:36] the same 18 numbers at the previous step",
        "obs[36:39] goal position",
    ]
)


def task_names() -> list[str]:
    """MetaWorld 3 task names without the ``-v3`` suffix, e.g. ``"drawer-open"``."""
    ensure_gl_backend()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return [name.removesuffix("-v3") for name in ALL_V3_ENVIRONMENTS]


def canonical_name(name: str) -> str:
    """``"drawer-open"`` or ``"drawer-open-v3"`` -> ``"drawer-open-v3"``.

    Raises:
        UnknownNameError: Not a MetaWorld 3 task; the message lists close matches.
    """
    short = name.removesuffix("-v3")
    names = task_names()
    if short not in names:
        raise UnknownNameError(
            f"unknown MetaWorld task {name!r}.{did_you_mean(short, names)} Valid tasks: {', '.join(names)}"
        )
    return f"{short}-v3"


class MetaWorldEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Seeding, success flag, float32 observations and upright frames for one MetaWorld env."""

    def __init__(self, env: Any, random_init: bool, flip: bool):
        gym.utils.RecordConstructorArgs.__init__(self, random_init=random_init, flip=flip)
        super().__init__(env)
        self.random_init = random_init
        self._flip = flip
        self.observation_space = gym.spaces.Box(
            env.observation_space.low.astype(np.float32),
            env.observation_space.high.astype(np.float32),
            dtype=np.float32,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; with ``random_init`` a seed fixes the drawn positions."""
        if seed is not None:
            task_env: Any = self.env.unwrapped  # MetaWorld's own env: it has seed(), gym's Env type does not
            task_env.seed(seed)
        obs, info = self.env.reset(options=options)
        return obs.astype(np.float32), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step; ``info["success"]`` is a ``bool``."""
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        info["success"] = bool(info.get("success", False))
        return obs.astype(np.float32), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        """``(height, width, 3)`` uint8 frame, turned upright if the camera is upside down."""
        frame = self.env.render()
        assert isinstance(frame, np.ndarray)  # make_metaworld_env builds the env with render_mode="rgb_array"
        return np.ascontiguousarray(frame[::-1, ::-1]) if self._flip else frame


def make_metaworld_env(
    name: str,
    width: int,
    height: int,
    camera: CameraSpec = DEFAULT_CAMERA,
    max_episode_steps: int | None = None,
    random_init: bool = True,
    task_seed: int = 0,
) -> gym.Env:
    """Make a MetaWorld 3 task.

    Args:
        name: Task name, with or without ``-v3`` (``"drawer-open"``).
        width: Rendered width in pixels.
        height: Rendered height in pixels.
        camera: Camera name (``corner``, ``corner2``, ``corner3``, ``corner4``, ``topview``, ...)
            or id; ``None`` (what ``make_env`` passes when none is given) is ``corner``.
        max_episode_steps: Episode length (default MetaWorld's 500).
        random_init: Draw new object/goal positions at every reset (from the reset's seed);
            ``False`` starts every episode from the same positions.
        task_seed: Seed of the fixed positions, and of the draws of resets without a seed
            before any seeded one.

    Returns:
        The env; ``render()`` gives upright ``(height, width, 3)`` uint8 frames.

    Raises:
        UnknownNameError: Unknown task or camera.
        ConfigError: Bad episode length.
    """
    full_name = canonical_name(name)
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    if max_episode_steps is not None and max_episode_steps <= 0:
        raise ConfigError(f"max_episode_steps must be positive, got {max_episode_steps}")
    env = ALL_V3_ENVIRONMENTS[full_name](render_mode="rgb_array", width=width, height=height)
    names = camera_names(env.model)
    camera_id = resolve_camera(DEFAULT_CAMERA if camera is None else camera, names)
    env.mujoco_renderer.camera_id = camera_id
    make_rendering_cheap(env.model, width, height)
    # Same set-up as MetaWorld's goal-observable classes, but seeded from our generator
    # instead of numpy's global one.
    env._partially_observable = False
    # The cached space still hides the goal (and step() clips observations to it).
    env.__dict__.pop("sawyer_observation_space", None)
    env.observation_space = env.sawyer_observation_space
    env._set_task_called = True
    env.seeded_rand_vec = True
    env.seed(task_seed)
    env._freeze_rand_vec = False
    env.reset()
    env._freeze_rand_vec = not random_init
    env.max_path_length = max_episode_steps or MAX_PATH_LENGTH
    flip = camera_is_upside_down(env.data, camera_id)
    wrapped = MetaWorldEnv(env, random_init=random_init, flip=flip)
    return gym.wrappers.TimeLimit(wrapped, env.max_path_length)
