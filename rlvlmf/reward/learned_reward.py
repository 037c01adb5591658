"""``LearnedReward``: any Gymnasium env, rewarded by a trained reward model, for any RL library.

The wrapper renders each step, scores the frame (and, for models that read states, the
transition) and returns that score as the reward; the env's own reward stays in
``info["env_reward"]``. It records its constructor arguments, so ``env.spec.make()`` rebuilds
it and Gymnasium's ``check_env`` passes::

    env = LearnedReward(gym.make("Pendulum-v1", render_mode="rgb_array"), "reward_models/run.pt")
    stable_baselines3.SAC("MlpPolicy", env).learn(10_000)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch

from rlvlmf.errors import UserError
from rlvlmf.reward.model import RewardModel, load_reward_model


class LearnedReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replaces the env's reward with a trained reward model's.

    Attributes:
        model: The reward model in use.
    """

    def __init__(self, env: gym.Env, model: RewardModel | str | Path, *,
                 device: str | torch.device | None = None) -> None:
        """Wrap ``env``.

        Args:
            env: An env made with ``render_mode="rgb_array"`` (any frame size: the model
                resizes frames itself).
            model: A ``RewardModel`` or the path of a saved one (``reward_model.pt``).
            device: Where a model given by path runs (``None``: CUDA when available).

        Raises:
            UserError: The env does not render ``rgb_array`` frames though the model reads
                frames, or the model file cannot be read.
        """
        gym.utils.RecordConstructorArgs.__init__(self, model=model, device=device)
        gym.Wrapper.__init__(self, env)
        self.model = model if isinstance(model, RewardModel) else load_reward_model(model, device=device)
        if self.model.uses_frames and getattr(env.unwrapped, "render_mode", None) != "rgb_array":
            raise UserError("LearnedReward renders each step: make the env with render_mode=\"rgb_array\"")
        self._last_obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and remember the first observation (state models read it)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; the reward is the model's, the env's is ``info["env_reward"]``."""
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        frames = None
        if self.model.uses_frames:
            frames = np.asarray(self.env.render())[None]
        states = None
        if self.model.uses_states:
            states = self.model.states(_row(self._last_obs), _row(action), _row(obs))
        reward = float(self.model(frames=frames, obs=states)[0])
        self._last_obs = obs
        return obs, reward, terminated, truncated, {**info, "env_reward": env_reward}


def _row(value: Any) -> np.ndarray:
    """One observation or action as a ``(1, D)`` float32 row."""
    return np.asarray(value, np.float32).reshape(1, -1)
