"""Feedback rounds that do not stall training (``feedback_lag``): overlap, determinism, exact resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.feedback.base import Answer, Backend, FramePair
from rlvlmf.feedback.registry import make_backend
from rlvlmf.feedback.store import QueryStore
from rlvlmf.training import loop
from rlvlmf.training.builder import build_config
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.loop import Trainer, run_training
from tests.training.test_train import TINY, assert_same_learning, metric_rows

LAG = 100


def lagged_config(steps: int = 800, lag: int = LAG):
    return build_config("pendulum", [*TINY, "eval_video=false", f"feedback_lag={lag}"], steps=steps)


class StepGatedTeacher(Backend):
    """The scripted teacher, answering only once training has gone ``hold_steps`` past the call.

    A loop that blocked on its labels would never get there: the answer then comes after
    ``timeout_s`` and the call is recorded as timed out.
    """

    def __init__(self, inner: Backend, hold_steps: int, timeout_s: float = 20.0) -> None:
        self.inner, self.hold_steps, self.timeout_s = inner, hold_steps, timeout_s
        self.trainer: Trainer | None = None
        self.advanced: list[int] = []  # steps trained between each call and its answer
        self.timed_out = 0

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def pair_identity(self, pair: FramePair) -> dict[str, Any] | None:
        return self.inner.pair_identity(pair)

    async def alabel(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        assert self.trainer is not None
        called_at = self.trainer.counters.step
        deadline = time.monotonic() + self.timeout_s
        while self.trainer.counters.step < called_at + self.hold_steps:
            if time.monotonic() > deadline:
                self.timed_out += 1
                break
            await asyncio.sleep(0.001)
        self.advanced.append(self.trainer.counters.step - called_at)
        return await self.inner.alabel(pairs, task)


def _gated(monkeypatch: pytest.MonkeyPatch, hold_steps: int, timeout_s: float = 20.0) -> list[StepGatedTeacher]:
    made: list[StepGatedTeacher] = []

    def make(spec: str, **kwargs: Any) -> Backend:
        made.append(StepGatedTeacher(make_backend(spec, **kwargs), hold_steps, timeout_s))
        return made[-1]

    monkeypatch.setattr(loop, "make_backend", make)
    return made


@pytest.mark.parametrize("lag", [-1, 200, 500])
def test_a_lag_must_end_before_the_next_round(lag: int) -> None:
    with pytest.raises(ConfigError, match="feedback_lag"):
        lagged_config(lag=lag)


def test_training_goes_on_while_labels_are_asked_and_the_fit_lands_at_a_fixed_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _gated(monkeypatch, hold_steps=LAG // 2)
    # 700 steps: the round at 600 has its full lag before the run ends (one at the last step could not).
    trainer = Trainer(lagged_config(steps=700), tmp_path / "gated", store_dir=tmp_path / "q1", export_dir=None,
                      progress=False)
    made[0].trainer = trainer
    try:
        trainer.run()
    finally:
        trainer.close()
    # Every call was answered only after 50 more steps of training, and never by the timeout.
    assert made[0].timed_out == 0 and len(made[0].advanced) >= 3 and min(made[0].advanced) >= LAG // 2
    fits = [row for row in metric_rows(tmp_path / "gated") if row["reward/train_acc"]]
    # Rounds start at 400 and 600; each fits LAG steps later.
    assert [int(row["step"]) for row in fits] == [500, 700]

    # The same run with an instant teacher learns bit-for-bit the same: the VLM's speed does not matter.
    monkeypatch.setattr(loop, "make_backend", make_backend)
    run_training(lagged_config(steps=700), tmp_path / "instant", store_dir=tmp_path / "q2", export_dir=None,
                 progress=False)
    assert_same_learning(tmp_path / "gated", tmp_path / "instant")


def test_without_a_lag_the_round_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _gated(monkeypatch, hold_steps=1, timeout_s=0.2)
    config = build_config("pendulum", TINY, steps=450)
    trainer = Trainer(config, tmp_path / "blocking", store_dir=tmp_path / "q", export_dir=None, progress=False)
    made[0].trainer = trainer
    try:
        trainer.run()
    finally:
        trainer.close()
    # The loop waited for its labels: not one step was trained while they were asked.
    assert made[0].advanced and set(made[0].advanced) == {0} and made[0].timed_out == len(made[0].advanced)
    fit = next(row for row in metric_rows(tmp_path / "blocking") if row["reward/train_acc"])
    waited, fitted, stalled = (float(fit[k]) for k in ("feedback/wait_seconds", "reward/fit_seconds", "feedback/stall_seconds"))
    assert waited >= 0.2 and stalled >= waited + fitted  # the labels' wait, then the fit, both holding training up


def test_resume_from_a_checkpoint_taken_mid_round_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    config = lagged_config(steps=800)
    run_training(config, tmp_path / "straight", store_dir=tmp_path / "q1", export_dir=None, progress=False)

    interrupted = tmp_path / "interrupted"
    # The round started at step 400 is in flight when the episode ends there and a checkpoint is
    # taken; the process stops at 450, before that round's fit (at 500).
    partial = run_training(config, interrupted, store_dir=tmp_path / "q2", export_dir=None, progress=False,
                           stop_after=450)
    assert partial.steps == 450
    loaded = CheckpointManager(interrupted / "checkpoints").load()
    assert loaded.step == 400 and loaded.meta["pending_round"]["apply_at"] == 500
    assert len(loaded.arrays["pending_first"]) > 0 and loaded.arrays["pending_first_frames"].dtype == np.uint8

    resumed = run_training(None, interrupted, resume=True, store_dir=tmp_path / "q2", export_dir=None, progress=False)
    assert resumed.extra["complete"]
    with QueryStore(tmp_path / "q1") as straight_store, QueryStore(tmp_path / "q2") as store:
        # The round in flight was asked again from the store: nothing paid for twice.
        assert store.stats().total == straight_store.stats().total
    assert_same_learning(interrupted, tmp_path / "straight")


def test_a_budget_reached_in_the_background_stops_feedback_but_not_training(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = build_config("pendulum", [*TINY, "eval_video=false", f"feedback_lag={LAG}", "labeler.max_queries=12"], steps=800)
    summary = run_training(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert summary.extra["complete"] and summary.steps == 800
    with QueryStore(tmp_path / "q") as store:
        asked = store.stats().total
    assert 0 < asked <= 12 + 8 and summary.labels == asked  # every paid answer was used
    assert "budget" in caplog.text.lower()
    fits = [row for row in metric_rows(tmp_path / "run") if row["reward/train_acc"]]
    assert len(fits) == 2  # the round at 400, and the one at 600 that ran into the budget; none after
