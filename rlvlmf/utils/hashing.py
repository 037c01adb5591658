"""Content digests shared by every part that keys something by what it holds.

The query store keys answers by frame hashes and canonical JSON; the CLIP reward caches
rewards by frame hash. Both use these functions, so a frame has one address everywhere.
(They live here rather than in ``rlvlmf.feedback.store`` because ``feedback`` and ``reward``
do not import each other.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def frame_hash(frame: np.ndarray) -> str:
    """Content address of a frame.

    Args:
        frame: HxWx3 uint8 array.

    Returns:
        Hex SHA-256 of the shape and the C-ordered pixel bytes.
    """
    digest = hashlib.sha256(f"{frame.shape[0]}x{frame.shape[1]}x{frame.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(frame, dtype=np.uint8).data)
    return digest.hexdigest()
