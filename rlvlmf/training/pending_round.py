"""A feedback round: its pairs fixed when it starts, its labels learned from when they are in.

Blocking (``feedback_lag=0``), the loop waits for the labels and fits at once. With a lag, a
round starts at one step (pairs drawn, frames rendered, queries sent) and the labelling and
the reward fit run in a background thread, on copies of the preference data and the
ensemble and with the round's own random generator, while SAC goes on training on the
current reward; the loop swaps the fitted ensemble in and relabels the buffer exactly
``feedback_lag`` steps after the start, so a run's result does not depend on how fast answers
come. A checkpoint taken in between keeps the round's pairs, frames and generator seed and the
labeler's counters from before it; a resumed run sends the same queries again, which the
query store answers for everything already paid for.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlvlmf.errors import BudgetExhausted
from rlvlmf.feedback.base import FramePair
from rlvlmf.feedback.labeler import LabeledQuery, Labeler
from rlvlmf.reward.config import StateKind
from rlvlmf.reward.ensemble import FitReport, RewardEnsemble
from rlvlmf.reward.preferences import UNKNOWN_LABEL, PreferenceDataset
from rlvlmf.reward.sampling import SegmentPairs
from rlvlmf.training.buffer import ReplayBuffer

logger = logging.getLogger(__name__)

_KEYS = ("pending_first", "pending_second", "pending_first_frames", "pending_second_frames")


@dataclass
class RoundOutcome:
    """What a round's labels taught: the data and ensemble after the fit."""

    results: list[LabeledQuery]
    kept: np.ndarray
    """Which results carry a preference (abstains and failures do not)."""
    preferences: PreferenceDataset
    ensemble: RewardEnsemble
    report: FitReport | None
    """``None`` when there is still no label at all to fit."""
    budget_exhausted: bool
    label_wait_s: float
    """Seconds spent waiting for the labels (store reads and backend calls)."""


@dataclass
class PendingRound:
    """One round's queries, and the answers (and, with a lag, the fit) on their way."""

    pairs: SegmentPairs
    """Buffer slots of each side's segment."""
    frames: tuple[np.ndarray, np.ndarray]
    """``(N, H, W, 3)`` frames shown to the VLM for the first and second sides."""
    apply_at: int
    """The step at which the round's fit is applied (the run waits there if it is late)."""
    labeler_stats: dict[str, Any]
    """The labeler's counters before the round, restored with a checkpoint taken during it."""
    seed: int | None = None
    """Seed of the round's generator when it is learned in the background (``None``: blocking)."""
    labels: concurrent.futures.Future[list[LabeledQuery]] | None = None
    outcome: concurrent.futures.Future[RoundOutcome] | None = None
    """The background labelling and fit; ``None`` when blocking, or until sent again after a resume."""
    started: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the round started (or was sent again after a resume)."""
    loop_s: float = 0.0
    """Seconds the training loop spent starting the round (sampling, rendering, sending)."""

    def frame_pairs(self, env_reward: np.ndarray) -> list[FramePair]:
        """The pairs as the labeler takes them, with the env's rewards for its ground truth."""
        first, second = self.frames
        return [FramePair(first[i], second[i], env_reward[self.pairs.first[i]], env_reward[self.pairs.second[i]])
                for i in range(len(self.pairs))]

    @property
    def sent(self) -> bool:
        return self.labels is not None

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)`` to save with a checkpoint."""
        arrays = dict(zip(_KEYS, (self.pairs.first, self.pairs.second, *self.frames)))
        return arrays, {"apply_at": self.apply_at, "labeler_stats": self.labeler_stats, "seed": self.seed}

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> PendingRound:
        """The round a checkpoint saved (not yet sent again)."""
        first, second, first_frames, second_frames = (arrays[key] for key in _KEYS)
        return cls(SegmentPairs(first, second), (first_frames, second_frames), int(meta["apply_at"]),
                   dict(meta["labeler_stats"]), meta.get("seed"))

    def cancel(self) -> None:
        """Stop asking (answers already in the store stay there)."""
        if self.labels is not None:
            self.labels.cancel()


class RoundLearner:
    """Sends rounds to the labeler and learns from their labels (see the module doc)."""

    def __init__(self, labeler: Labeler, buffer: ReplayBuffer, state_kind: StateKind | None) -> None:
        self.labeler, self.buffer, self.state_kind = labeler, buffer, state_kind

    def send(self, pending: PendingRound, preferences: PreferenceDataset, ensemble: RewardEnsemble) -> None:
        """Send the round's queries; with a seed, also learn from them in a background thread."""
        pending.labels = self.labeler.submit(pending.frame_pairs(self.buffer.env_reward))
        if pending.seed is None:
            return
        # Copies: the loop keeps predicting with (and may checkpoint) the current data and ensemble.
        preferences, ensemble = copy.deepcopy(preferences), copy.deepcopy(ensemble)
        rng = np.random.default_rng(pending.seed)
        outcome: concurrent.futures.Future[RoundOutcome] = concurrent.futures.Future()

        def work() -> None:
            outcome.set_running_or_notify_cancel()
            try:
                outcome.set_result(self.learn(pending, preferences, ensemble, rng))
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, which re-raises it
                outcome.set_exception(exc)

        pending.outcome = outcome
        threading.Thread(target=work, name="rlvlmf-feedback-round", daemon=True).start()

    def learn(self, pending: PendingRound, preferences: PreferenceDataset, ensemble: RewardEnsemble,
              rng: np.random.Generator) -> RoundOutcome:
        """Wait for the labels, add them to ``preferences`` and fit ``ensemble`` (both in place)."""
        assert pending.labels is not None  # sent first
        exhausted = False
        started = time.perf_counter()
        try:
            results = pending.labels.result()
        except BudgetExhausted as exc:
            # Everything answered before the limit is in the store: use it, then ask no more.
            logger.warning("%s; no more feedback rounds, training goes on with the labels so far", exc)
            self.labeler.go_offline()
            results = self.labeler.label(pending.frame_pairs(self.buffer.env_reward))
            exhausted = True
        label_wait_s = time.perf_counter() - started
        # Abstains and failures carry no preference; a genuine "no difference" (or a
        # position flip) is a 0.5 soft label.
        keep = np.array([r.usable for r in results], bool)
        labels = np.array([int(r.label) for r in results], np.int64)[keep]
        gt = np.array([UNKNOWN_LABEL if r.gt_label is None else int(r.gt_label) for r in results], np.int64)[keep]
        kept = pending.pairs.take(keep)
        if len(kept):
            preferences.add(self.buffer.reward_inputs(kept.first, self.state_kind),
                            self.buffer.reward_inputs(kept.second, self.state_kind), labels, rng, gt_labels=gt)
        report = ensemble.fit(preferences, rng) if len(preferences) else None
        return RoundOutcome(results, keep, preferences, ensemble, report, exhausted, label_wait_s)
