"""Which torch device a run's networks live on, and moving host data there.

``auto`` picks the first CUDA GPU when torch sees one and the CPU otherwise, so the same
config runs on a laptop and on a GPU box. Nothing here assumes CUDA: on a CPU every helper
is the identity or the plain CPU code path.
"""

from __future__ import annotations

import re

import torch

from rlvlmf.errors import ConfigError, UserError

DEVICE_HELP = "use auto, cpu, cuda or cuda:N"
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(name: str) -> None:
    """Validate a device name without looking at the hardware.

    Raises:
        ConfigError: ``name`` is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    if not isinstance(name, str) or not _DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` (``auto``: ``cuda`` when available, else ``cpu``).

    Raises:
        ConfigError: Not a device name.
        UserError: A CUDA device was asked for that torch cannot see.
    """
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} was asked for but torch sees no CUDA GPU (a CPU build of torch?); "
                            "use device=cpu or device=auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} was asked for but torch sees {torch.cuda.device_count()} GPU(s); "
                            f"{DEVICE_HELP} with N < {torch.cuda.device_count()}")
    return device


def as_device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device``; names go through ``resolve_device`` (so ``auto`` works)."""
    return device if isinstance(device, torch.device) else resolve_device(device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device``; to a GPU through pinned memory, without blocking the host.

    On the CPU the tensor itself is returned (no copy).
    """
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on ``device`` (float32 master weights), or a no-op context when not ``enabled``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
