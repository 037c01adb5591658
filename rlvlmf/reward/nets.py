"""One reward network: a small conv encoder for frames, an MLP for states, or both.

The ensemble (``rlvlmf.reward.ensemble``) holds several of these and loops over them:
on a CPU, separate convolutions measured 2.5x faster than one grouped convolution over
all members (benchmarks/bench_learning.py), so members are plain modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlvlmf.reward.config import CONV_KERNELS, CONV_PADDINGS, CONV_STRIDES, RewardModelConfig, conv_output_size, receptive_field
from rlvlmf.utils.nn import mlp


def preprocess_frames(frames: torch.Tensor) -> torch.Tensor:
    """Turn uint8 frames into the float layout the conv encoder reads.

    Args:
        frames: ``(N, H, W, 3)`` uint8 tensor.

    Returns:
        ``(N, 3, H, W)`` float32 tensor in ``[-0.5, 0.5]``.
    """
    return frames.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


def random_shift(images: torch.Tensor, pixels: int, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each frame by whole pixels, edges repeated (DrQ's random-shift augmentation).

    Args:
        images: ``(N, C, H, W)`` float frames.
        pixels: Largest shift in each direction.
        shifts: ``(N, 2)`` integer offsets in ``[0, 2 * pixels]`` (row, column) into the
            frame padded by ``pixels``; ``pixels`` everywhere leaves frames unchanged.

    Returns:
        ``(N, C, H, W)`` shifted frames.
    """
    if pixels == 0:
        return images
    n, _, h, w = images.shape
    padded = nn.functional.pad(images, (pixels,) * 4, mode="replicate")
    rows = (shifts[:, 0, None] + torch.arange(h, device=images.device))[:, :, None]  # (N, H, 1)
    cols = (shifts[:, 1, None] + torch.arange(w, device=images.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indexing around the channel slice puts the indexed axes first: (N, H, W, C).
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def conv_layers(channels: Sequence[int]) -> list[nn.Module]:
    """The RL-VLM-F convs (kernels 5/3/3/3, strides 3/2/2/2), each padded by ``kernel // 2`` so
    every pixel reaches the output (``CONV_PADDINGS``), each followed by a LeakyReLU."""
    layers: list[nn.Module] = []
    in_channels = 3
    for out_channels, kernel, stride, padding in zip(channels, CONV_KERNELS, CONV_STRIDES, CONV_PADDINGS):
        layers += [nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.LeakyReLU()]
        in_channels = out_channels
    return layers


class ConvEncoder(nn.Sequential):
    """The RL-VLM-F image encoder with padded convs: four strided convs with LeakyReLU, flattened
    (at 64 px, 3x3 cells of ``channels[-1]`` features)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__(*conv_layers(channels), nn.Flatten())


FLS_ATTENTION_AFTER = 2
"""Conv layers before the attention layer. After two layers a 64-pixel frame is still an 11x11
grid; after four it is 3x3 and attention would have little to choose between."""
FLS_ATTENTION_GAIN = 10.0
"""Multiplier of the attention logits. Under Adam it makes them learn that much faster than
the convs. On tests/test_saliency.py's synthetic task (150 Adam steps), the mean map inside
the rewarded region / outside was 0.94 / 0.74 with gain 1 and 0.70 / 0.23 with gain 10."""


class FLSConvEncoder(nn.Module):
    """The (padded) RL-VLM-F conv encoder with a spatial softmax attention layer after ``attention_after`` convs.

    The attention conv starts at zero, so the untrained encoder weights every position
    equally and behaves like the plain encoder. Weights are scaled by the number of
    positions so their mean is 1 and the features keep their scale.
    """

    def __init__(self, channels: Sequence[int], attention_after: int = FLS_ATTENTION_AFTER) -> None:
        """Build the encoder.

        Args:
            channels: Output channels of the conv layers (one per entry of ``CONV_KERNELS``).
            attention_after: Conv layers before the attention layer, in ``[1, len(channels)]``.
        """
        super().__init__()
        if not 1 <= attention_after <= len(channels):
            raise ValueError(f"attention_after must be in [1, {len(channels)}], got {attention_after}")
        layers = conv_layers(channels)
        self.before = nn.Sequential(*layers[: 2 * attention_after])
        self.after = nn.Sequential(*layers[2 * attention_after :], nn.Flatten())
        # Two extra input channels carry each cell's (row, column): a 1x1 conv over features
        # alone scores content only, and could not learn to look at a place (padding marks
        # only the border cells).
        self.attention = nn.Conv2d(channels[attention_after - 1] + 2, 1, kernel_size=1)
        self.receptive_field = receptive_field(attention_after)
        """``(size, jump, start)`` in input pixels of one attention cell's window
        (``rlvlmf.reward.config.receptive_field``)."""
        assert self.attention.bias is not None  # Conv2d has one unless built with bias=False
        nn.init.zeros_(self.attention.weight)
        nn.init.zeros_(self.attention.bias)

    def attend(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features before the attention layer and the attention weights.

        Args:
            images: ``(N, 3, H, W)`` preprocessed frames.

        Returns:
            ``(features, weights)``: ``(N, C, h, w)`` and ``(N, 1, h, w)`` weights that sum
            to 1 over the ``h * w`` positions of each frame.
        """
        features = self.before(images)
        logits = self.attention(torch.cat([features, _coordinates(features)], dim=1)) * FLS_ATTENTION_GAIN
        weights = torch.softmax(logits.flatten(1), dim=1).view_as(logits)
        return features, weights

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Flat features ``(N, F)``, the same size as the plain encoder's."""
        features, weights = self.attend(images)
        positions = weights.shape[-1] * weights.shape[-2]
        return self.after(features * weights * positions)


def _coordinates(features: torch.Tensor) -> torch.Tensor:
    """``(N, 2, h, w)`` row and column of each cell, in ``[-1, 1]``."""
    n, _, h, w = features.shape
    rows = torch.linspace(-1.0, 1.0, h, dtype=features.dtype, device=features.device).view(1, 1, h, 1).expand(n, 1, h, w)
    cols = torch.linspace(-1.0, 1.0, w, dtype=features.dtype, device=features.device).view(1, 1, 1, w).expand(n, 1, h, w)
    return torch.cat([rows, cols], dim=1)


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
        self.head = mlp(features, config.head_hidden_sizes, 1, activation=nn.LeakyReLU)

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
