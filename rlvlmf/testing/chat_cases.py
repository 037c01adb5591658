"""Pieces the API chat backend tests share: the task asked about, a random pair, one label."""

from __future__ import annotations

import asyncio

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.base import Answer, Backend, FramePair

TASK = TaskDescription(name="drawer-open", goal="to open the drawer", positive_phrases=("an open drawer",))


def random_pair(rng: np.random.Generator) -> FramePair:
    """Two random 24x32x3 uint8 frames (first drawn first)."""
    return FramePair(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


def label_one(backend: Backend, pair: FramePair) -> Answer:
    """The backend's answer for one pair about ``TASK`` (one ``alabel`` call in a fresh loop)."""
    return asyncio.run(backend.alabel([pair], TASK))[0]
