"""One reward network: a small conv encoder for frames, an MLP for states, or both.

The ensemble (``rlvlmf.reward.ensemble``) holds several of these and loops over them:
on a CPU, separate convolutions measured 2.5x faster than one grouped convolution over
all members (benchmarks/bench_learning.py), so members are plain modules.
"""

from __future__ import annotations

import torch
from torch import nn

from rlvlmf.reward.config import CONV_KERNELS, CONV_STRIDES, RewardModelConfig, conv_output_size
from rlvlmf.reward.saliency import FLSConvEncoder


def preprocess_frames(frames: torch.Tensor) -> torch.Tensor:
    """Turn uint8 frames into the float layout the conv encoder reads.

    Args:
        frames: ``(N, H, W, 3)`` uint8 tensor.

    Returns:
        ``(N, 3, H, W)`` float32 tensor in ``[-0.5, 0.5]``.
    """
    return frames.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


class ConvEncoder(nn.Sequential):
    """The RL-VLM-F image encoder: four strided convs with LeakyReLU, flattened."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, kernel, stride in zip(channels, CONV_KERNELS, CONV_STRIDES):
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride), nn.LeakyReLU()]
            in_channels = out_channels
        layers.append(nn.Flatten())
        super().__init__(*layers)


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """A LeakyReLU MLP ``in_dim -> hidden... -> out_dim`` with a linear last layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LeakyReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class RewardNet(nn.Module):
    """Maps a preprocessed frame, a state vector, or both to a reward in ``(-1, 1)``."""

    def __init__(self, config: RewardModelConfig) -> None:
        super().__init__()
        self.config = config
        features = 0
        self.encoder: ConvEncoder | FLSConvEncoder | None = None
        if config.uses_frames:
            self.encoder = (FLSConvEncoder if config.encoder == "fls" else ConvEncoder)(config.conv_channels)
            features += config.conv_channels[-1] * conv_output_size(config.frame_size) ** 2
        if config.uses_states:
            features += config.state_dim
        self.head = mlp(features, config.head_hidden_sizes, 1)

    def forward(self, images: torch.Tensor | None, states: torch.Tensor | None) -> torch.Tensor:
        """Rewards of a batch.

        Args:
            images: ``(N, 3, S, S)`` float frames from ``preprocess_frames`` (or ``None`` for
                a state-only model).
            states: ``(N, state_dim)`` float32 (or ``None`` for an image-only model).

        Returns:
            ``(N,)`` rewards in ``(-1, 1)``.
        """
        parts = []
        if self.encoder is not None:
            if images is None:
                raise ValueError("this reward model reads frames; got images=None")
            parts.append(self.encoder(images))
        if self.config.uses_states:
            if states is None:
                raise ValueError("this reward model reads state vectors; got states=None")
            parts.append(states)
        features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return torch.tanh(self.head(features)).squeeze(-1)
