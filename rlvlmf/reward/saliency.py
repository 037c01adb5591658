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

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rlvlmf.errors import UserError
from rlvlmf.reward.nets import FLSConvEncoder, preprocess_frames

if TYPE_CHECKING:
    from rlvlmf.reward.ensemble import RewardEnsemble

SaliencyMethod = Literal["auto", "gradient", "fls"]


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
        assert noisy.grad is not None  # backward() just filled it: noisy requires grad
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
        maps = project_to_pixels(weights, encoder.receptive_field, (images.shape[-2], images.shape[-1]))
    return _normalise(maps[:, 0])


def project_to_pixels(weights: torch.Tensor, field: tuple[int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """Spread each cell's weight over the pixels of its receptive field (mean where fields overlap).

    Plain interpolation would misplace the map: a conv cell sees a window that starts at
    ``start + index * jump``, not one centred on ``(index + 0.5) * H / h``.

    Args:
        weights: ``(N, 1, h, w)`` per-cell values.
        field: ``(size, jump, start)`` of a cell's receptive field in input pixels
            (``FLSConvEncoder.receptive_field``); ``start < 0`` where windows reach into padding.
        size: ``(H, W)`` of the input.

    Returns:
        ``(N, 1, H, W)``.
    """
    extent, jump, start = field
    kernel = torch.ones(1, 1, extent, extent, dtype=weights.dtype, device=weights.device)
    painted = F.conv_transpose2d(weights, kernel, stride=jump)
    coverage = F.conv_transpose2d(torch.ones_like(weights[:1]), kernel, stride=jump)
    maps = painted / coverage
    # Row/column 0 of ``maps`` is input pixel ``start``: drop the padding before the frame (or
    # pad when windows start inside it), then pixels past the last window get no weight.
    maps = maps[..., -start:, -start:] if start < 0 else F.pad(maps, (start, 0, start, 0))
    pad_h, pad_w = max(size[0] - maps.shape[-2], 0), max(size[1] - maps.shape[-1], 0)
    return F.pad(maps, (0, pad_w, 0, pad_h))[..., : size[0], : size[1]]


# --------------------------------------------------------------------------- reward models


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, H, W, 3)`` uint8 frames to ``(N, size, size, 3)`` (bilinear, no crop)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR)) for f in frames])


def reward_model_saliency(model: RewardEnsemble, frames: np.ndarray, method: SaliencyMethod = "auto") -> np.ndarray:
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

    config = model.config
    if config.input != "image":
        raise UserError(f"saliency maps need an image-only reward model; this one reads {config.input!r} inputs")
    encoders = [member.encoder for member in model.members]
    fls_encoders = [encoder for encoder in encoders if isinstance(encoder, FLSConvEncoder)]
    has_fls = len(fls_encoders) == len(encoders)
    if method == "auto":
        method = "fls" if has_fls else "gradient"
    if method not in ("fls", "gradient"):
        raise UserError(f"saliency method must be 'auto', 'gradient' or 'fls', got {method!r}")
    if method == "fls" and not has_fls:
        raise UserError("this reward model has no attention layer (train it with reward encoder=fls); use --method gradient")
    images = preprocess_frames(torch.from_numpy(np.ascontiguousarray(frames)))
    model.eval()
    if method == "fls":
        return np.mean([fls_saliency(encoder, images) for encoder in fls_encoders], axis=0)

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


def overlay_fn(model: RewardEnsemble, method: SaliencyMethod = "auto", scale: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A function from ``(N, H, W, 3)`` uint8 frames of any size to their saliency overlays.

    Frames are resized to the model's ``frame_size`` first; for the audit report.
    """

    def make(frames: np.ndarray) -> np.ndarray:
        resized = resize_frames(frames, model.config.frame_size)
        maps = reward_model_saliency(model, resized, method)
        return np.stack([overlay(f, m, scale=scale) for f, m in zip(resized, maps)])

    return make
