"""Turning a rendered image into the frame a VLM or reward model sees: crop, then resize."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

from rlvlmf.errors import ConfigError


@dataclass(frozen=True)
class Crop:
    """A rectangle in rendered pixels.

    Attributes:
        top: First row kept.
        left: First column kept.
        height: Number of rows kept.
        width: Number of columns kept.
    """

    top: int
    left: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.top, self.left) < 0 or min(self.height, self.width) <= 0:
            raise ConfigError(
                f"bad crop {self.as_tuple()}: expected (top, left, height, width) with "
                "top, left >= 0 and height, width > 0"
            )

    @classmethod
    def parse(cls, value: Crop | Sequence[int] | str) -> Crop:
        """Build a crop from a ``Crop``, a 4-sequence or a ``"top,left,height,width"`` string.

        Raises:
            ConfigError: The value does not have four integers.
        """
        if isinstance(value, Crop):
            return value
        parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
        try:
            numbers = [int(part) for part in parts]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 4:
            raise ConfigError(
                f"bad crop {value!r}: expected four integers (top, left, height, width)"
            )
        return cls(*numbers)

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)``."""
        return (self.top, self.left, self.height, self.width)

    def check_fits(self, height: int, width: int) -> None:
        """Raise ``ConfigError`` unless the crop lies inside a ``height`` x ``width`` image."""
        if self.top + self.height > height or self.left + self.width > width:
            raise ConfigError(
                f"crop {self.as_tuple()} (top, left, height, width) does not fit in the "
                f"{height}x{width} rendered image; keep top+height <= {height} and "
                f"left+width <= {width}"
            )


def crop_frame(frame: np.ndarray, crop: Crop | None) -> np.ndarray:
    """Cut ``crop`` out of a frame.

    Args:
        frame: ``(H, W, 3)`` uint8 image.
        crop: Rectangle to keep, or ``None`` for the whole frame.

    Returns:
        ``(crop.height, crop.width, 3)`` view of ``frame`` (the frame itself when ``crop`` is None).
    """
    if crop is None:
        return frame
    return frame[crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]


def resize_frame(frame: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """Resize a frame with an antialiasing (bilinear, reducing-gap) filter.

    Args:
        frame: ``(H, W, 3)`` uint8 image.
        size: Output side of a square, ``(height, width)``, or ``None`` to keep the frame.

    Returns:
        ``(height, width, 3)`` uint8 image, or ``frame`` unchanged.
    """
    if size is None:
        return frame
    height, width = (size, size) if isinstance(size, int) else size
    if frame.shape[:2] == (height, width):
        return frame
    resized = Image.fromarray(np.ascontiguousarray(frame)).resize(
        (width, height), Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    return np.asarray(resized)


class FrameWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Crops and resizes what ``render()`` returns; observations, rewards and steps pass through.

    Rendering stays lazy: nothing is drawn unless ``render()`` is called.
    """

    def __init__(self, env: gym.Env, crop: Crop | None = None, frame_size: int | None = None):
        """Wrap ``env``.

        Args:
            env: An env whose ``render()`` returns ``(H, W, 3)`` uint8 images.
            crop: Rectangle kept from each rendered image (the caller checks that it fits).
            frame_size: Final square side after the crop, or ``None`` to keep the crop's size.
        """
        # Recorded so that ``env.spec.make()`` (and Gymnasium's env checker) can rebuild it.
        gym.utils.RecordConstructorArgs.__init__(self, crop=crop, frame_size=frame_size)
        super().__init__(env)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}  # it crops arrays only
        if frame_size is not None and frame_size <= 0:
            raise ConfigError(f"frame_size must be a positive number of pixels, got {frame_size}")
        self.crop = crop
        self.frame_size = frame_size

    def render(self) -> np.ndarray:
        """Render, crop and resize.

        Returns:
            ``(frame_size, frame_size, 3)`` uint8 if ``frame_size`` is set, else the cropped
            ``(crop.height, crop.width, 3)`` (or the rendered size when there is no crop).
        """
        frame = self.env.render()
        if frame is None or not isinstance(frame, np.ndarray) or frame.ndim != 3:
            raise ConfigError("this env does not render rgb_array frames")
        return resize_frame(crop_frame(frame, self.crop), self.frame_size)
