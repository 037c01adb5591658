"""The minibatch type SAC trains on; the replay buffer produces it."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TransitionBatch(NamedTuple):
    """A SAC minibatch of torch tensors.

    Attributes:
        obs: ``(B, obs_dim)`` float32.
        action: ``(B, action_dim)`` float32.
        reward: ``(B, 1)`` float32 (learned or env reward, as asked).
        next_obs: ``(B, obs_dim)`` float32.
        not_done: ``(B, 1)`` float32, 0 where the episode terminated (not on time-limit
            truncation, which still bootstraps).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor
