"""A tiny user-style Gymnasium env for tests and examples: move a dot onto a target.

Importing this module registers ``PointReach-v0`` (and two broken variants that
``rlvlmf train`` must refuse), the way a user's own package would. rlvlmf reaches it through
Gymnasium's ``module:EnvId`` form, ``gym:rlvlmf.testing.point_env:PointReach-v0``, which
imports the module first. Frames are drawn with numpy: no OpenGL, no pygame, microseconds a
frame.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

FRAME_SIZE = 48
"""Side of the square rendered frame, in pixels."""
SUCCESS_DISTANCE = 0.1
"""Distance to the target under which ``info["success"]`` is true."""


class PointReach(gym.Env):
    """A point in the unit square moved by velocity actions towards a fixed target.

    Observation: ``(x, y, target_x, target_y)`` in ``[-1, 1]``; action: a ``(2,)`` velocity
    in ``[-1, 1]`` scaled by 0.1; reward: minus the distance to the target.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012 - as gym.Env declares it

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._target = np.array([0.5, 0.5], np.float32)
        self._position = np.zeros(2, np.float32)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._position, self._target]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        velocity = np.clip(np.asarray(action, np.float32), -1.0, 1.0) * 0.1
        self._position = np.clip(self._position + velocity, -1.0, 1.0).astype(np.float32)
        distance = float(np.linalg.norm(self._position - self._target))
        return self._obs(), -distance, False, False, {"success": distance < SUCCESS_DISTANCE}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((FRAME_SIZE, FRAME_SIZE, 3), 255, np.uint8)
        for (x, y), colour, radius in ((self._target, (220, 30, 30), 4), (self._position, (30, 30, 220), 3)):
            col, row = (np.array([x, -y]) + 1.0) / 2.0 * (FRAME_SIZE - 1)
            r0, c0 = round(float(row)), round(float(col))
            frame[max(r0 - radius, 0):r0 + radius + 1, max(c0 - radius, 0):c0 + radius + 1] = colour
        return frame


class PointReachNoRender(PointReach):
    """The same task without ``rgb_array`` frames (``rlvlmf train`` refuses it)."""

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": 15}  # noqa: RUF012 - as gym.Env declares it

    def render(self) -> None:
        return None


class PointReachDiscrete(PointReach):
    """The same task with four discrete moves (``rlvlmf train`` refuses it: SAC needs a Box)."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.action_space = gym.spaces.Discrete(4)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        moves = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
        return super().step(moves[int(action)])


for _id, _cls in (("PointReach-v0", PointReach), ("PointReachNoRender-v0", PointReachNoRender),
                  ("PointReachDiscrete-v0", PointReachDiscrete)):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"{__name__}:{_cls.__name__}", max_episode_steps=50)

SPEC = "gym:rlvlmf.testing.point_env:PointReach-v0"
"""The env's rlvlmf spec (Gymnasium's ``module:EnvId`` form behind the ``gym:`` family)."""
GOAL = "to move the blue square onto the red square"
"""A goal sentence for it."""
TINY_SCHEDULE: tuple[str, ...] = (
    "seed_steps=100", "unsup_steps=50", "num_interact=100", "reward_batch=8", "max_feedback=24",
    "eval_every=200", "eval_episodes=2", "eval_video=false", "checkpoint_every=100", "query_pool_size=16",
    "sac.hidden_sizes=16,16", "sac.batch_size=16", "reward_model.max_epochs=2", "reward_model.frame_size=48",
    "reward_model.conv_channels=4,4,4,4", "reward_model.ensemble_size=2", "labeler.progress=false",
)
"""``--set`` overrides for a training run of seconds on this env (tests and README examples)."""
