"""A trained reward model as a plain function: frames (and states) in, rewards out.

``load_reward_model("reward_models/run.pt")`` is what other code (your own RL loop,
Stable-Baselines3 through ``rlvlmf.LearnedReward``) calls. It hides the ensemble, the
frame size the model was trained at and the tensor layout::

    model = load_reward_model("reward_models/cartpole-swingup-preference-scripted-s0.pt")
    rewards = model(frames=frames)          # frames: (N, H, W, 3) uint8, any H and W -> (N,) float32
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlvlmf.envs.frames import resize_frame
from rlvlmf.reward.config import RewardModelConfig, StateKind
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.reward.ensemble import load_reward_model as load_ensemble
from rlvlmf.reward.inputs import state_features
from rlvlmf.reward.nets import preprocess_frames


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class RewardModel:
    """The ensemble-mean reward of a trained model, batched and without gradients.

    Build it with ``load_reward_model(path)`` or ``RewardModel(ensemble)``.
    """

    def __init__(self, ensemble: RewardEnsemble, *, device: str | torch.device | None = None,
                 batch_size: int | None = None) -> None:
        """Wrap a fitted ensemble for inference.

        Args:
            ensemble: The fitted ensemble; its members are moved to ``device`` (the
                ensemble itself is not trained further through this object).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... ``None``: CUDA when available.
            batch_size: Frames per forward pass (default the model's ``predict_batch_size``).
        """
        self.device = _resolve_device(device)
        self.config: RewardModelConfig = ensemble.config
        self.members = ensemble.members.to(self.device).eval()
        self.batch_size = batch_size or self.config.predict_batch_size

    @property
    def uses_frames(self) -> bool:
        """Whether the model reads frames (``input`` is ``image`` or ``both``)."""
        return self.config.uses_frames

    @property
    def uses_states(self) -> bool:
        """Whether the model reads state vectors (``input`` is ``state`` or ``both``)."""
        return self.config.uses_states

    @property
    def state_kind(self) -> StateKind:
        """Which transition fields a state-reading model was trained on: ``"obs_action"``
        (observation before the step and the action), ``"obs"`` or ``"next_obs"``."""
        return self.config.state_kind

    @property
    def frame_size(self) -> int:
        """Side of the square frames the model reads; larger or other frames are resized to it."""
        return self.config.frame_size

    def states(self, obs: np.ndarray, actions: np.ndarray | None, next_obs: np.ndarray) -> np.ndarray:
        """The state vectors this model reads, from the fields of ``N`` transitions.

        Args:
            obs: ``(N, obs_dim)`` observations before the steps.
            actions: ``(N, action_dim)`` actions (needed when ``state_kind == "obs_action"``).
            next_obs: ``(N, obs_dim)`` observations after the steps (what the frames show).

        Returns:
            ``(N, D)`` float32, ready for ``obs=``.
        """
        if self.state_kind == "obs_action" and actions is None:
            raise ValueError("this reward model reads (observation, action) pairs: pass the actions")
        return state_features(self.state_kind, obs, np.zeros((len(obs), 0)) if actions is None else actions, next_obs)

    def _frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be an (N, H, W, 3) uint8 array, got shape {frames.shape} dtype {frames.dtype}")
        if frames.shape[1:3] == (self.frame_size, self.frame_size):
            return frames
        return np.stack([resize_frame(frame, self.frame_size) for frame in frames]) if len(frames) else \
            np.zeros((0, self.frame_size, self.frame_size, 3), np.uint8)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray | None = None, obs: np.ndarray | None = None) -> np.ndarray:
        """Rewards of ``N`` steps: the mean over the ensemble's members.

        Args:
            frames: ``(N, H, W, 3)`` uint8 rendered frames of any size; resized (bilinear,
                antialiased) to ``frame_size`` square, as in training. Needed when
                ``uses_frames``.
            obs: ``(N, D)`` state vectors, needed when ``uses_states``: for a model trained
                on ``next_obs`` or ``obs`` the observation itself, for ``obs_action`` the
                observation and action concatenated (``states()`` builds them).

        Returns:
            ``(N,)`` float32 rewards.

        Raises:
            ValueError: An input the model reads is missing or has the wrong shape.
        """
        if self.uses_frames and frames is None:
            raise ValueError("this reward model reads frames: pass frames=(N, H, W, 3) uint8")
        if self.uses_states and obs is None:
            raise ValueError(f"this reward model reads state vectors of length {self.config.state_dim}: pass obs=(N, D)")
        images = self._frames(frames) if self.uses_frames and frames is not None else None
        states = None
        if self.uses_states and obs is not None:
            states = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
            if states.shape[1] != self.config.state_dim:
                raise ValueError(f"obs must have {self.config.state_dim} features per row "
                                 f"({self.state_kind}), got {states.shape[1]}")
        count = len(images) if images is not None else len(states)  # type: ignore[arg-type]
        if images is not None and states is not None and len(states) != count:
            raise ValueError(f"frames and obs differ in length: {count} and {len(states)}")
        out = np.empty(count, np.float32)
        for start in range(0, count, self.batch_size):
            part = slice(start, start + self.batch_size)
            image_t = None if images is None else preprocess_frames(torch.from_numpy(images[part]).to(self.device))
            state_t = None if states is None else torch.from_numpy(states[part]).to(self.device)
            total = sum(member(image_t, state_t).float() for member in self.members)
            out[part] = (total / len(self.members)).cpu().numpy()
        return out

    def __repr__(self) -> str:
        return (f"RewardModel(input={self.config.input!r}, frame_size={self.frame_size}, "
                f"members={len(self.members)}, device={str(self.device)!r})")


def load_reward_model(path: str | Path, *, device: str | torch.device | None = None,
                      batch_size: int | None = None) -> RewardModel:
    """Load a reward model that ``rlvlmf train`` saved (``reward_model.pt`` or ``reward_models/NAME.pt``).

    Args:
        path: The ``.pt`` file.
        device: Where to run it (``None``: CUDA when available, else CPU).
        batch_size: Frames per forward pass (default the model's ``predict_batch_size``).

    Returns:
        A ``RewardModel``: ``model(frames=(N, H, W, 3) uint8, obs=None) -> (N,) float32``.

    Raises:
        UserError: The file is missing or is not a reward model of a known format.
    """
    return RewardModel(load_ensemble(path), device=device, batch_size=batch_size)
