"""evaluate_policy's success: success at any step of an episode, as in the reference."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlvlmf.training.evaluate import evaluate_policy


class _SuccessAtStep(gym.Env):
    """Five-step episodes whose ``info["success"]`` is true at one step only (step 2 for even
    seeds, never for odd ones)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._succeeds = seed is not None and seed % 2 == 0
        self._t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        info = {"success": self._succeeds and self._t == 2}
        return np.zeros(1, np.float32), 0.0, False, self._t == 5, info


def test_success_counts_at_any_step_and_rates_over_episodes() -> None:
    result = evaluate_policy(_SuccessAtStep(), lambda obs: np.zeros(1, np.float32), 4, seed=0)
    assert result.successes == [True, False, True, False]  # the last step failed in every episode
    assert result.success_rate == 0.5
