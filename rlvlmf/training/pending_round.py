"""A feedback round in flight: its pairs are fixed, its labels are being asked.

With ``feedback_lag > 0`` a round starts at one step (pairs drawn, frames rendered, queries
sent) and is applied ``feedback_lag`` steps later (labels fitted, buffer relabelled) while SAC
goes on training in between. A checkpoint taken in between keeps the round's pairs and frames
and the labeler's counters from before it; a resumed run sends the same queries again, which
the query store answers for everything already paid for.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvlmf.feedback.base import FramePair
from rlvlmf.feedback.labeler import LabeledQuery
from rlvlmf.reward.sampling import SegmentPairs

_KEYS = ("pending_first", "pending_second", "pending_first_frames", "pending_second_frames")


@dataclass
class PendingRound:
    """One round's queries, and the answers on their way."""

    pairs: SegmentPairs
    """Buffer slots of each side's segment."""
    frames: tuple[np.ndarray, np.ndarray]
    """``(N, H, W, 3)`` frames shown to the VLM for the first and second sides."""
    apply_at: int
    """The step at which the labels are fitted (the run waits there for late answers)."""
    labeler_stats: dict[str, Any]
    """The labeler's counters before the round, restored with a checkpoint taken during it."""
    future: concurrent.futures.Future[list[LabeledQuery]] | None = None
    """The labelling in flight; ``None`` until sent (again, after a resume)."""

    def frame_pairs(self, env_reward: np.ndarray) -> list[FramePair]:
        """The pairs as the labeler takes them, with the env's rewards for its ground truth."""
        first, second = self.frames
        return [FramePair(first[i], second[i], env_reward[self.pairs.first[i]], env_reward[self.pairs.second[i]])
                for i in range(len(self.pairs))]

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)`` to save with a checkpoint."""
        arrays = dict(zip(_KEYS, (self.pairs.first, self.pairs.second, *self.frames)))
        return arrays, {"apply_at": self.apply_at, "labeler_stats": self.labeler_stats}

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> PendingRound:
        """The round a checkpoint saved (not yet sent again)."""
        first, second, first_frames, second_frames = (arrays[key] for key in _KEYS)
        return cls(SegmentPairs(first, second), (first_frames, second_frames), int(meta["apply_at"]),
                   dict(meta["labeler_stats"]))

    def cancel(self) -> None:
        """Stop asking (answers already in the store stay there)."""
        if self.future is not None:
            self.future.cancel()
