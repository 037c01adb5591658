"""The few full-size frames a run keeps: a reservoir of query candidates per feedback round.

RL-VLM-F shows the VLM frames at 200-300 pixels, but the reward model reads 64-pixel
frames. Keeping every step at the VLM's size is what made the reference code need ~70 GB.
Here each round draws its pairs from a uniform reservoir sample of the steps since the
previous round ("recent episodes"), and only those steps are rendered at the VLM's size.
"""

from __future__ import annotations

import numpy as np


class QueryPool:
    """A uniform reservoir of (buffer slot, full-size frame) over one window of steps.

    Algorithm R: the k-th step of the window enters with probability ``capacity / k``, so
    every step of the window is equally likely to be in the pool. ``offer`` says whether
    a step enters *before* its frame is rendered, so frames that will not be kept are never
    drawn at full size.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"query pool capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self.slots = np.full(capacity, -1, np.int64)
        self.frames: np.ndarray | None = None
        self.seen = 0
        self._pending: int | None = None

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def offer(self, rng: np.random.Generator) -> bool:
        """Count one more step of the window; True if its frame should be ``put``."""
        self.seen += 1
        if self.seen <= self.capacity:
            self._pending = self.seen - 1
        else:
            j = int(rng.integers(0, self.seen))
            self._pending = j if j < self.capacity else None
        return self._pending is not None

    def put(self, slot: int, frame: np.ndarray) -> None:
        """Store the frame of the step just offered (only after ``offer`` returned True)."""
        if self._pending is None:
            raise RuntimeError("put() without a successful offer()")
        if self.frames is None:
            self.frames = np.zeros((self.capacity, *frame.shape), np.uint8)
        self.slots[self._pending] = slot
        self.frames[self._pending] = frame
        self._pending = None

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, slots)`` of the entries that hold a frame."""
        positions = np.flatnonzero(self.slots[: len(self)] >= 0)
        return positions, self.slots[positions]

    def clear(self) -> None:
        """Start a new window (after a feedback round)."""
        self.slots[:] = -1
        self.seen = 0
        self._pending = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (exact resume)."""
        frames = self.frames if self.frames is not None else np.zeros((0,), np.uint8)
        return {"pool_slots": self.slots.copy(), "pool_frames": frames, "pool_seen": np.int64(self.seen)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from ``state_dict`` output."""
        self.slots = np.array(state["pool_slots"], np.int64)
        self.capacity = len(self.slots)
        frames = np.asarray(state["pool_frames"])
        self.frames = frames if frames.ndim == 4 else None
        self.seen = int(state["pool_seen"])
        self._pending = None
