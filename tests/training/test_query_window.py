"""The query window: pairs from the last N episodes, drawn again from saved simulator states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlvlmf.training import loop
from rlvlmf.training.builder import build_config
from rlvlmf.training.loop import Trainer
from rlvlmf.training.state_window import StateWindow
from tests.training.test_train import TINY


def test_window_keeps_the_last_episodes_and_resumes_exactly() -> None:
    window = StateWindow(max_episodes=2)
    position = 0
    for length in (3, 2, 4):
        for t in range(length):
            window.add(position, np.full(2, position, float), np.full(1, length, float) if t == 0 else None)
            position += 1
        window.end_episode()
    window.add(position, np.full(2, position, float), np.ones(1))  # an open episode
    assert [s.tolist() for s in window.episode_slots(capacity=100, total_added=10)] == [[3, 4], [5, 6, 7, 8], [9]]
    # Episodes whose first step the buffer has overwritten are left out; slots wrap.
    assert [s.tolist() for s in window.episode_slots(capacity=6, total_added=10)] == [[5, 0, 1, 2], [3]]
    (episode, step), = window.states_of(np.array([1]), capacity=6, total_added=10)
    assert episode.tolist() == [4.0] and step.tolist() == [7.0, 7.0]
    copy = StateWindow(max_episodes=1)
    copy.load_state_dict(window.state_dict())
    assert copy.max_episodes == 2 and copy.in_episode
    assert [s.tolist() for s in copy.episode_slots(100, 10)] == [[3, 4], [5, 6, 7, 8], [9]]
    with pytest.raises(ValueError, match="does not follow"):
        copy.add(11, np.zeros(2))


def test_rounds_ask_about_redrawn_frames_of_older_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config("pendulum", [*TINY, "sampling=disagreement"], steps=1000)
    trainer = Trainer(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert trainer.window is not None and trainer.pool is None
    live_frames: dict[int, np.ndarray] = {}  # stream position -> the frame the training env drew then
    render = trainer.env.render

    def recording_render() -> np.ndarray:
        frame = render()
        live_frames[trainer.buffer.total_added] = frame
        return frame

    monkeypatch.setattr(trainer.env, "render", recording_render)
    methods: list[str] = []
    select = loop.select_queries

    def recording_select(method, *args, **kwargs):  # type: ignore[no-untyped-def]
        methods.append(method)
        return select(method, *args, **kwargs)

    monkeypatch.setattr(loop, "select_queries", recording_select)
    asked: list[tuple[int, np.ndarray, list]] = []  # (step, chosen positions, frame pairs)
    submit = trainer.labeler.submit

    def recording_submit(pairs):  # type: ignore[no-untyped-def]
        asked.append((trainer.counters.step, pairs))
        return submit(pairs)

    monkeypatch.setattr(trainer.labeler, "submit", recording_submit)
    sampled: list[np.ndarray] = []
    sample = trainer._sample_pairs

    def recording_sample(num: int):  # type: ignore[no-untyped-def]
        pairs = sample(num)
        sampled.append(np.concatenate([pairs.first[:, -1], pairs.second[:, -1]]))
        return pairs

    monkeypatch.setattr(trainer, "_sample_pairs", recording_sample)
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary.extra["complete"] and len(asked) == 4  # rounds at steps 400, 600, 800, 1000
    # The ensemble is untrained before the first round: that round is uniform, the rest informed.
    assert methods == ["uniform", "disagreement", "disagreement", "disagreement"]
    # The frames shown are those the training env drew at those steps (the buffer never wraps
    # here, so slot = stream position), though only simulator states were kept.
    for (_, pairs), slots in zip(asked, sampled):
        shown = [p.first for p in pairs] + [p.second for p in pairs]
        for slot, frame in zip(slots, shown):
            np.testing.assert_array_equal(frame, live_frames[int(slot)])
    # Later rounds still choose steps from before the previous round (the old reservoir held
    # only the steps since then).
    previous_round_steps = [step for step, _ in asked[:-1]]
    assert any((slots < before).any() for slots, before in zip(sampled[1:], previous_round_steps))


def test_envs_that_cannot_restore_fall_back_to_the_reservoir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop.sim_state, "can_restore", lambda env: False)
    trainer = Trainer(build_config("pendulum", TINY, steps=400), tmp_path / "run", store_dir=tmp_path / "q",
                      export_dir=None, progress=False)
    try:
        assert trainer.window is None and trainer.pool is not None
        assert trainer.run().queries > 0
    finally:
        trainer.close()
    off = build_config("pendulum", [*TINY, "query_window_episodes=0"], steps=200)
    trainer = Trainer(off, tmp_path / "run2", store_dir=tmp_path / "q", export_dir=None, progress=False)
    try:
        assert trainer.window is None and trainer.pool is not None
    finally:
        trainer.close()
