"""Where an image reward model looks: gradient saliency and Free-Lunch-Saliency attention.

Two kinds of map, both ``(N, H, W)`` in ``[0, 1]`` at the frame's resolution:

- **Gradient saliency** works for any differentiable image reward: the absolute gradient
  of the reward with respect to the input pixels, max over colour channels (Simonyan et
  al. 2014), optionally averaged over noisy copies of the frame (SmoothGrad).
- **FLS attention** (Free-Lunch Saliency, Nikulin et al. 2019): ``FLSConvEncoder`` is the
  reward model's conv encoder with a spatial attention layer inside it. A 1x1 conv scores
  each position of an intermediate feature map, a softmax over positions turns the scores
  into weights, and the features are multiplied by them, so later layers see only what the
  weights let through: the weights *are* the saliency map, at no extra cost. Select it with
  ``RewardModelConfig(encoder="fls")``.

``overlay`` blends a map over its frame for people to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rlvlmf.errors import UserError
from rlvlmf.reward.config import CONV_KERNELS, CONV_STRIDES

SaliencyMethod = Literal["auto", "gradient", "fls"]
FLS_ATTENTION_AFTER = 2
"""Conv layers before the attention layer. After two layers a 64-pixel frame is still a 9x9
grid; after four it is 1x1 and attention would have nothing to choose between."""
FLS_ATTENTION_GAIN = 10.0
"""Multiplier of the attention logits. Under Adam it makes them learn that much faster than
the convs. On tests/test_saliency.py's synthetic task (150 Adam steps), the mean map inside
the rewarded region / outside was 0.94 / 0.74 with gain 1 and 0.70 / 0.23 with gain 10."""


# --------------------------------------------------------------------------- FLS encoder


class FLSConvEncoder(nn.Module):
    """The RL-VLM-F conv encoder with a spatial softmax attention layer after ``attention_after`` convs.

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
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, kernel, stride in zip(channels, CONV_KERNELS, CONV_STRIDES):
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride), nn.LeakyReLU()]
            in_channels = out_channels
        self.before = nn.Sequential(*layers[: 2 * attention_after])
        self.after = nn.Sequential(*layers[2 * attention_after :], nn.Flatten())
        # Two extra input channels carry each cell's (row, column): a 1x1 conv over features
        # alone scores content only, and could not learn to look at a place (unpadded convs
        # carry no position).
        self.attention = nn.Conv2d(channels[attention_after - 1] + 2, 1, kernel_size=1)
        extent, jump = 1, 1
        for kernel, stride in zip(CONV_KERNELS[:attention_after], CONV_STRIDES[:attention_after]):
            extent, jump = extent + (kernel - 1) * jump, jump * stride
        self.receptive_field = (extent, jump)
        """``(size, jump)`` in input pixels of one attention cell's window."""
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
    rows = torch.linspace(-1.0, 1.0, h, dtype=features.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    cols = torch.linspace(-1.0, 1.0, w, dtype=features.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
    return torch.cat([rows, cols], dim=1)


# --------------------------------------------------------------------------- maps


def _normalise(maps: torch.Tensor) -> np.ndarray:
    """Scale each ``(H, W)`` map to ``[0, 1]`` by its own maximum."""
    maps = maps.detach().float()
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).numpy()


def gradient_saliency(
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    samples: int = 1,
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Gradient of the reward with respect to the pixels, for any image reward model.

    Args:
        reward_fn: Maps ``(N, 3, H, W)`` float frames to ``(N,)`` rewards, differentiably.
        images: ``(N, 3, H, W)`` float frames as ``reward_fn`` reads them.
        samples: Noisy copies averaged (SmoothGrad); 1 means the plain gradient.
        noise_std: Standard deviation of the Gaussian noise added to each copy.
        rng: Draws the noise (required when ``samples > 1`` and ``noise_std > 0``).

    Returns:
        ``(N, H, W)`` float32 maps in ``[0, 1]``: per pixel, the largest absolute gradient
        over the colour channels, divided by the frame's largest.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if samples > 1 and noise_std > 0 and rng is None:
        raise ValueError("SmoothGrad noise needs an rng")
    total = torch.zeros(images.shape[0], *images.shape[-2:])
    for _ in range(samples):
        noisy = images.detach().clone()
        if noise_std > 0 and rng is not None:
            noisy += torch.from_numpy(rng.normal(0.0, noise_std, size=tuple(images.shape)).astype(np.float32))
        noisy.requires_grad_(True)
        with torch.enable_grad():
            reward_fn(noisy).sum().backward()
        total += noisy.grad.abs().amax(dim=1)
    return _normalise(total / samples)


def fls_saliency(encoder: FLSConvEncoder, images: torch.Tensor) -> np.ndarray:
    """The FLS attention weights, upsampled to the frame.

    Args:
        encoder: An ``FLSConvEncoder``.
        images: ``(N, 3, H, W)`` preprocessed frames.

    Returns:
        ``(N, H, W)`` float32 maps in ``[0, 1]``.
    """
    with torch.no_grad():
        _, weights = encoder.attend(images)
        maps = project_to_pixels(weights, encoder.receptive_field, tuple(images.shape[-2:]))
    return _normalise(maps[:, 0])


def project_to_pixels(weights: torch.Tensor, field: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Spread each cell's weight over the pixels of its receptive field (mean where fields overlap).

    Plain interpolation would misplace the map: a conv cell sees a window that starts at
    ``index * jump``, not one centred on ``(index + 0.5) * H / h``.

    Args:
        weights: ``(N, 1, h, w)`` per-cell values.
        field: ``(size, jump)`` of a cell's receptive field in input pixels.
        size: ``(H, W)`` of the input.

    Returns:
        ``(N, 1, H, W)``.
    """
    extent, jump = field
    kernel = torch.ones(1, 1, extent, extent, dtype=weights.dtype)
    painted = F.conv_transpose2d(weights, kernel, stride=jump)
    coverage = F.conv_transpose2d(torch.ones_like(weights[:1]), kernel, stride=jump)
    maps = painted / coverage
    # Pixels past the last window (the conv's floor division drops them) get no weight.
    pad_h, pad_w = max(size[0] - maps.shape[-2], 0), max(size[1] - maps.shape[-1], 0)
    return F.pad(maps, (0, pad_w, 0, pad_h))[..., : size[0], : size[1]]


# --------------------------------------------------------------------------- reward models


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, H, W, 3)`` uint8 frames to ``(N, size, size, 3)`` (bilinear, no crop)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR)) for f in frames])


def reward_model_saliency(model: nn.Module, frames: np.ndarray, method: SaliencyMethod = "auto") -> np.ndarray:
    """Saliency of a reward ensemble (``rlvlmf.reward.ensemble.RewardEnsemble``) on frames.

    Maps of the members are averaged: the ensemble's reward is their mean.

    Args:
        model: A ``RewardEnsemble`` reading frames only (``input="image"``).
        frames: ``(N, S, S, 3)`` uint8 frames at the model's ``frame_size``.
        method: ``"fls"`` (needs ``encoder="fls"``), ``"gradient"``, or ``"auto"`` (FLS when
            the model has it, else gradient).

    Returns:
        ``(N, S, S)`` float32 maps in ``[0, 1]``.

    Raises:
        UserError: The model reads state vectors, or ``"fls"`` for a model without attention.
    """
    from rlvlmf.reward.nets import preprocess_frames  # nets imports this module for the encoder

    config = model.config
    if config.input != "image":
        raise UserError(f"saliency maps need an image-only reward model; this one reads {config.input!r} inputs")
    has_fls = all(isinstance(member.encoder, FLSConvEncoder) for member in model.members)
    if method == "auto":
        method = "fls" if has_fls else "gradient"
    if method not in ("fls", "gradient"):
        raise UserError(f"saliency method must be 'auto', 'gradient' or 'fls', got {method!r}")
    if method == "fls" and not has_fls:
        raise UserError("this reward model has no attention layer (train it with reward encoder=fls); use --method gradient")
    images = preprocess_frames(torch.from_numpy(np.ascontiguousarray(frames)))
    model.eval()
    if method == "fls":
        return np.mean([fls_saliency(member.encoder, images) for member in model.members], axis=0)

    def ensemble_reward(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x, None) for member in model.members]).mean(dim=0)

    return gradient_saliency(ensemble_reward, images)


def overlay(frame: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, colormap: str = "jet", scale: int = 1) -> np.ndarray:
    """Blend a saliency map over its frame.

    Args:
        frame: ``(H, W, 3)`` uint8.
        saliency: ``(H, W)`` in ``[0, 1]``.
        alpha: Opacity of the map where it is 1 (it fades out with the saliency).
        colormap: A matplotlib colormap name.
        scale: Integer upscaling (nearest neighbour) so small frames are visible.

    Returns:
        ``(H * scale, W * scale, 3)`` uint8.
    """
    import matplotlib

    colours = matplotlib.colormaps[colormap](np.clip(saliency, 0.0, 1.0))[..., :3]
    weight = alpha * np.clip(saliency, 0.0, 1.0)[..., None]
    blended = (1.0 - weight) * frame.astype(np.float64) / 255.0 + weight * colours
    image = np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else image


def overlay_fn(model: nn.Module, method: SaliencyMethod = "auto", scale: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A function from ``(N, H, W, 3)`` uint8 frames of any size to their saliency overlays.

    Frames are resized to the model's ``frame_size`` first; for the audit report.
    """

    def make(frames: np.ndarray) -> np.ndarray:
        resized = resize_frames(frames, model.config.frame_size)
        maps = reward_model_saliency(model, resized, method)
        return np.stack([overlay(f, m, scale=scale) for f, m in zip(resized, maps)])

    return make
