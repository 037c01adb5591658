"""What a reward model reads for a batch of transitions or segments."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rlvlmf.reward.config import StateKind


class RewardInputs(NamedTuple):
    """Inputs of a reward model, for a batch of steps or of segments.

    Attributes:
        frames: ``(N, S, S, 3)`` or ``(N, T, S, S, 3)`` uint8 frames at the reward model's
            resolution, or ``None`` for a state-only model.
        states: ``(N, D)`` or ``(N, T, D)`` float32 state vectors, or ``None`` for an
            image-only model.
    """

    frames: np.ndarray | None
    states: np.ndarray | None

    @property
    def size(self) -> int:
        """Leading size N (``len()`` is the tuple's length, 2)."""
        present = self.frames if self.frames is not None else self.states
        return 0 if present is None else int(present.shape[0])

    def take(self, index: np.ndarray | slice) -> RewardInputs:
        """The same fields indexed along the first axis."""
        return RewardInputs(
            None if self.frames is None else self.frames[index],
            None if self.states is None else self.states[index],
        )


def state_features(kind: StateKind, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """The state vector a reward model reads, built from transition fields.

    Args:
        kind: ``"obs_action"`` (PEBBLE's r(s, a)), ``"obs"`` or ``"next_obs"``.
        obs: ``(..., obs_dim)`` observations.
        action: ``(..., action_dim)`` actions.
        next_obs: ``(..., obs_dim)`` next observations.

    Returns:
        ``(..., D)`` float32 array.
    """
    if kind == "obs_action":
        return np.concatenate([obs, action], axis=-1).astype(np.float32, copy=False)
    if kind == "obs":
        return np.asarray(obs, dtype=np.float32)
    if kind == "next_obs":
        return np.asarray(next_obs, dtype=np.float32)
    raise ValueError(f"unknown state kind {kind!r}")
