"""Loading local transformers models: device and dtype choice, and errors a user can act on.

Shared by the ``hf`` (generative VLM) and ``clip`` (CLIP/SigLIP scoring) backends. Torch and
transformers are imported only when a model is loaded, so listing backends stays cheap.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from rlvlmf.errors import MissingDependencyError, UserError

if TYPE_CHECKING:
    import torch

Device = str
"""``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` (CUDA when available)."""
DType = Literal["auto", "float32", "float16", "bfloat16"]

DEVICE_HELP = "use cpu, cuda, cuda:N, mps or auto"
DTYPES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")


def require(package: str, *, purpose: str, pip_name: str | None = None) -> None:
    """Raise a one-line ``MissingDependencyError`` unless ``package`` can be imported.

    Raises:
        MissingDependencyError: The package is not installed (the message names the pip command).
    """
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(f"{purpose} needs the '{pip_name or package}' package: pip install {pip_name or package}")


def check_device(device: str) -> None:
    """Validate a device string without importing torch.

    Raises:
        ValueError: Not a device name this project accepts.
    """
    base = device.split(":", 1)[0]
    if base not in {"cpu", "cuda", "mps", "auto"} or (":" in device and not device.split(":", 1)[1].isdigit()):
        raise ValueError(f"unknown device {device!r}; {DEVICE_HELP}")


def resolve_device(device: str) -> torch.device:
    """The torch device for ``device`` (``"auto"``: the first CUDA GPU, else CPU).

    Raises:
        UserError: CUDA (or MPS) was asked for but is not available.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but torch sees no CUDA GPU; use device=cpu or device=auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' was asked for but is not available; use device=cpu or device=auto")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype for ``dtype`` (``"auto"``: bfloat16 on CUDA, float32 elsewhere)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


HUB_TIMEOUT_S = 5.0
"""How long ``check_hub`` waits for the hub to answer a TCP connect."""

_TRUE = {"1", "true", "yes", "on"}


def check_hub(model: str, *, timeout_s: float = HUB_TIMEOUT_S) -> None:
    """Fail in seconds, with one line, when ``model`` must be downloaded and the hub is unreachable.

    Loading from an unreachable hub otherwise retries for minutes before it fails. Nothing is
    checked for a local directory, a model already in the cache, offline mode
    (``HF_HUB_OFFLINE``) or behind a proxy (a direct connect says nothing about the proxy).

    Raises:
        UserError: The hub (``HF_ENDPOINT``, default huggingface.co) cannot be reached.
    """
    if Path(model).exists() or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(model, "config.json"), str):
            return
    except Exception:  # noqa: BLE001 - a malformed id fails properly in from_pretrained
        return
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"{model!r} is not a local directory nor in the cache, and the model hub {endpoint} cannot be "
                        f"reached ({exc}); check the network, or download it where there is one and pass its "
                        "directory") from None


def load_pretrained(loader: Any, model: str, *, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(model, **kwargs)`` with errors that say what to do.

    Args:
        loader: A transformers auto class (``AutoProcessor``, ``AutoModel``...).
        model: Hub id or local directory.
        what: What is being loaded, for the message (``"processor"``).
        **kwargs: Passed to ``from_pretrained``.

    Raises:
        MissingDependencyError: The checkpoint's code needs a package that is not installed
            (torchvision for Qwen2-VL's processor, sentencepiece for SigLIP's tokenizer...).
        UserError: The checkpoint cannot be found (not a directory and not downloadable).
    """
    try:
        return loader.from_pretrained(model, **kwargs)
    except ImportError as exc:
        missing = _missing_package(exc)
        raise MissingDependencyError(
            f"loading the {what} of {model!r} needs the '{missing}' package: pip install {missing}"
            if missing
            else f"loading the {what} of {model!r} failed on a missing package: {_first_line(exc)}"
        ) from exc
    except OSError as exc:
        where = "local directory" if Path(model).exists() else "hub id (offline, or not downloaded yet?)"
        raise UserError(f"cannot load the {what} of {model!r} as a {where}: {_first_line(exc)}") from exc


def _missing_package(exc: ImportError) -> str | None:
    """Best guess at the pip name of the package an ``ImportError`` is about."""
    name = getattr(exc, "name", None)
    if name:
        return name.split(".")[0]
    text = str(exc).lower()
    for package in ("torchvision", "sentencepiece", "timm", "einops", "accelerate", "protobuf", "av", "decord"):
        if package in text:
            return package
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
