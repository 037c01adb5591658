"""Frames as PNG bytes and data URLs, and the side-by-side composite of a pair.

PNG encoding is deterministic for a given frame (fixed compression settings, no metadata, no
timestamps), so the query store can address frames by the hash of their PNG bytes. The
bytes depend on the zlib build as well; the store should not assume they match across
machines, only that the same frame encodes the same way on one install.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_PNG_COMPRESS_LEVEL = 6
_LABEL_HEIGHT = 24
_GAP = 8


def _check_frame(frame: np.ndarray, name: str = "frame") -> None:
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(f"{name} must be an HxWx3 uint8 array, got shape {shape} dtype {dtype}")


def encode_png(frame: np.ndarray) -> bytes:
    """Encode a frame as PNG.

    Args:
        frame: HxWx3 uint8 RGB array.

    Returns:
        PNG bytes; the same frame always gives the same bytes on one install.
    """
    _check_frame(frame)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(
        buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL, optimize=False
    )
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG (or any format PIL reads) bytes into an HxWx3 uint8 RGB array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def to_data_url(frame: np.ndarray) -> str:
    """A frame as a ``data:image/png;base64,...`` URL, the way chat APIs take inline images."""
    return "data:image/png;base64," + base64.b64encode(encode_png(frame)).decode("ascii")


def to_base64_png(frame: np.ndarray) -> str:
    """A frame's PNG bytes, base64-encoded (for APIs that take the data without the URL prefix)."""
    return base64.b64encode(encode_png(frame)).decode("ascii")


def side_by_side(first: np.ndarray, second: np.ndarray, labels: tuple[str, str] | None = ("Image 1", "Image 2")) -> np.ndarray:
    """Put two frames next to each other on a white canvas, each with its name above it.

    Frames of different heights are top-aligned. Deterministic on one install: the same
    inputs give the same pixels (PIL's bundled default font).

    Args:
        first: HxWx3 uint8 frame, placed on the left.
        second: H'xW'x3 uint8 frame, placed on the right.
        labels: Names drawn above the left and right frames, or ``None`` for no label bar.

    Returns:
        (L + max(H, H')) x (W + gap + W') x 3 uint8 array, with L the label-bar height
        (0 without labels).
    """
    _check_frame(first, "first")
    _check_frame(second, "second")
    top = _LABEL_HEIGHT if labels is not None else 0
    height = top + max(first.shape[0], second.shape[0])
    width = first.shape[1] + _GAP + second.shape[1]
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x_second = first.shape[1] + _GAP
    canvas[top : top + first.shape[0], : first.shape[1]] = first
    canvas[top : top + second.shape[0], x_second:] = second
    if labels is None:
        return canvas
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=16)
    for text, x, w in ((labels[0], 0, first.shape[1]), (labels[1], x_second, second.shape[1])):
        left, _, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((x + max(0, (w - (right - left)) // 2), max(0, (top - bottom) // 2)), text, fill=(0, 0, 0), font=font)
    return np.asarray(image, dtype=np.uint8).copy()
