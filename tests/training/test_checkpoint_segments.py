"""Incremental checkpoints: segments hold only what is new, rebuild the buffer exactly, and are shared safely."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.errors import UserError
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.training.buffer import ReplayBuffer, bytes_per_transition
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.query_pool import QueryPool
from rlvlmf.training.segments import read_manifest

OBS, ACT, FRAME = 3, 2, 8


def fill(buffer: ReplayBuffer, rng: np.random.Generator, steps: int, pool: QueryPool | None = None) -> None:
    for _ in range(steps):
        in_pool = pool is not None and pool.offer(rng)
        slot = buffer.add(rng.normal(size=OBS), rng.normal(size=ACT), float(rng.normal()), rng.normal(size=OBS),
                          terminated=bool(rng.random() < 0.05), truncated=bool(rng.random() < 0.1),
                          frame=rng.integers(0, 255, (FRAME, FRAME, 3), dtype=np.uint8))
        buffer.learned_reward[slot] = rng.normal()
        if in_pool:
            pool.put(slot, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))


def relabel(buffer: ReplayBuffer, rng: np.random.Generator) -> None:
    buffer.learned_reward[: len(buffer)] = rng.normal(size=len(buffer)).astype(np.float32)


def save(manager: CheckpointManager, step: int, buffer: ReplayBuffer, pool: QueryPool | None = None) -> Path:
    return manager.save(step, arrays={}, torch_state={}, meta={}, preferences=None, buffer=buffer, pool=pool)


def assert_same_buffer(a: ReplayBuffer, b: ReplayBuffer) -> None:
    for name in ReplayBuffer._ARRAYS:
        if getattr(a, name) is not None:
            np.testing.assert_array_equal(getattr(a, name)[: len(a)], getattr(b, name)[: len(b)], err_msg=name)
    for key, value in a.header().items():
        np.testing.assert_array_equal(value, b.header()[key])


def segment_bytes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (root / "segments").iterdir()}


def test_chain_of_checkpoints_rebuilds_the_buffer_exactly_through_wraps_and_relabels(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    buffer = ReplayBuffer(50, OBS, ACT, FRAME)
    manager = CheckpointManager(tmp_path)
    snapshots = {}
    chunks = [(20, False), (15, True), (10, False), (30, True), (40, False)]
    for step, (steps, relabelled) in enumerate(chunks, start=1):
        fill(buffer, rng, steps)
        if relabelled:
            relabel(buffer, rng)
        save(manager, step, buffer)
        snapshots[step] = copy.deepcopy(buffer)
    assert buffer.total_added == 115 > buffer.capacity  # wrapped twice
    for name in manager.list():  # the two kept checkpoints
        restored = ReplayBuffer(50, OBS, ACT, FRAME)
        CheckpointManager(tmp_path).load(name, buffer=restored)
        assert_same_buffer(restored, snapshots[int(name[5:])])
    # Segments of transitions the ring overwrote, and of dropped checkpoints, are gone.
    listed = {ref.file for refs in read_manifest(tmp_path / manager.list()[-1]) for ref in refs}
    listed |= {ref.file for refs in read_manifest(tmp_path / manager.list()[0]) for ref in refs}
    assert set(segment_bytes(tmp_path)) == listed


def test_a_checkpoint_writes_the_new_transitions_and_a_float_per_relabelled_step(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    buffer = ReplayBuffer(10_000, OBS, ACT, FRAME)
    manager = CheckpointManager(tmp_path)
    per_step = bytes_per_transition(OBS, ACT, FRAME)
    fill(buffer, rng, 3000)
    save(manager, 1, buffer)
    before = segment_bytes(tmp_path)
    fill(buffer, rng, 500)
    save(manager, 2, buffer)
    new = {k: v for k, v in segment_bytes(tmp_path).items() if k not in before}
    assert len(new) == 1 and 500 * per_step <= sum(new.values()) <= 500 * per_step + 4096  # npz headers only
    before = segment_bytes(tmp_path)
    relabel(buffer, rng)
    fill(buffer, rng, 500)
    save(manager, 3, buffer)
    new = {k: v for k, v in segment_bytes(tmp_path).items() if k not in before}
    rewards = [v for k, v in new.items() if k.startswith("rewards-")]
    assert len(new) == 2 and len(rewards) == 1 and 3500 * 4 <= rewards[0] <= 3500 * 4 + 1024
    restored = ReplayBuffer(10_000, OBS, ACT, FRAME)
    CheckpointManager(tmp_path).load(buffer=restored)
    assert_same_buffer(restored, buffer)


def test_resumed_chain_continues_incrementally_and_pool_frames_round_trip(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    buffer, pool = ReplayBuffer(500, OBS, ACT, FRAME), QueryPool(8)
    manager = CheckpointManager(tmp_path)
    fill(buffer, rng, 100, pool)
    save(manager, 1, buffer, pool)
    restored, restored_pool = ReplayBuffer(500, OBS, ACT, FRAME), QueryPool(8)
    resumed = CheckpointManager(tmp_path)
    resumed.load(buffer=restored, pool=restored_pool)
    assert_same_buffer(restored, buffer)
    positions, slots = pool.valid()
    np.testing.assert_array_equal(restored_pool.valid()[1], slots)
    np.testing.assert_array_equal(restored_pool.frames[positions], pool.frames[positions])
    # The resumed manager knows what is saved: the next checkpoint writes only the new steps.
    fill(restored, np.random.default_rng(1), 50, restored_pool)
    before = segment_bytes(tmp_path)
    save(resumed, 2, restored, restored_pool)
    new = [k for k in segment_bytes(tmp_path) if k not in before]
    transitions = [k for k in new if k.startswith("transitions-")]
    assert transitions == [k for k in new if k.startswith("transitions-000000000100-000000000150")]
    restored_pool.clear()
    save(resumed, 3, restored, restored_pool)
    assert read_manifest(tmp_path / "step_000000003")[1] == []  # an empty pool needs no frames
    again, again_pool = ReplayBuffer(500, OBS, ACT, FRAME), QueryPool(8)
    CheckpointManager(tmp_path).load(buffer=again, pool=again_pool)
    assert len(again_pool.valid()[0]) == 0 and again_pool.seen == 0
    assert_same_buffer(again, restored)


def test_damaged_segment_names_a_checkpoint_without_it(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    buffer = ReplayBuffer(500, OBS, ACT, FRAME)
    manager = CheckpointManager(tmp_path)
    fill(buffer, rng, 100)
    save(manager, 100, buffer)
    fill(buffer, rng, 100)
    save(manager, 200, buffer)
    newest, shared = [tmp_path / "segments" / f for f in sorted(segment_bytes(tmp_path), reverse=True)]
    assert newest.name.startswith("transitions-000000000100") and shared.name.startswith("transitions-000000000000")
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"step_000000200 is damaged \(DamagedSegment.*--checkpoint step_000000100"):
        CheckpointManager(tmp_path).load(buffer=ReplayBuffer(500, OBS, ACT, FRAME))
    newest.write_bytes(data)
    shared.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="the earlier checkpoints need that segment too; start the run again"):
        CheckpointManager(tmp_path).load(buffer=ReplayBuffer(500, OBS, ACT, FRAME))


def test_checkpoint_saved_before_segments_still_loads(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    buffer, pool = ReplayBuffer(500, OBS, ACT, FRAME), QueryPool(8)
    fill(buffer, rng, 60, pool)
    manager = CheckpointManager(tmp_path)
    # The old layout: the whole buffer and pool inside arrays.npz, no segment list.
    manager.save(60, arrays={**buffer.state_dict(), **pool.state_dict()}, torch_state={}, meta={}, preferences=None)
    assert read_manifest(tmp_path / "step_000000060") is None
    restored, restored_pool = ReplayBuffer(500, OBS, ACT, FRAME), QueryPool(8)
    resumed = CheckpointManager(tmp_path)
    resumed.load(buffer=restored, pool=restored_pool)
    assert_same_buffer(restored, buffer)
    np.testing.assert_array_equal(restored_pool.slots, pool.slots)
    fill(restored, rng, 10, restored_pool)
    save(resumed, 70, restored, restored_pool)  # the first segmented checkpoint writes everything
    again = ReplayBuffer(500, OBS, ACT, FRAME)
    CheckpointManager(tmp_path).load(buffer=again, pool=QueryPool(8))
    assert_same_buffer(again, restored)


def test_preference_pairs_are_written_once_and_rebuilt_through_the_fifo_cap(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    buffer, prefs = ReplayBuffer(100, OBS, ACT, FRAME), PreferenceDataset(capacity=25, heldout_fraction=0.2)
    manager = CheckpointManager(tmp_path)
    for step, n in enumerate([10, 0, 12, 9], start=1):
        frames = rng.integers(0, 255, (2, n, 1, FRAME, FRAME, 3), dtype=np.uint8)
        prefs.add(RewardInputs(frames[0], None), RewardInputs(frames[1], None), rng.integers(-1, 2, n), rng)
        before = set(segment_bytes(tmp_path)) if (tmp_path / "segments").exists() else set()
        manager.save(step, arrays={}, torch_state={}, meta={}, preferences=prefs, buffer=buffer)
        new = [f for f in segment_bytes(tmp_path) if f not in before and f.startswith("labels-")]
        assert len(new) == (1 if n else 0)
    assert prefs.total_added == 31 and len(prefs) == 25  # the cap dropped the 6 oldest pairs
    assert not (tmp_path / "step_000000004" / "preferences.npz").exists()
    loaded = CheckpointManager(tmp_path).load(buffer=ReplayBuffer(100, OBS, ACT, FRAME)).preferences
    assert loaded.total_added == 31 and len(loaded) == 25 and loaded.heldout_fraction == 0.2
    expected, got = prefs.all(), loaded.all()
    np.testing.assert_array_equal(got.first.frames, expected.first.frames)
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_array_equal(loaded.heldout_indices().size, prefs.heldout_indices().size)


def test_query_window_episodes_are_written_once_and_the_open_one_comes_back(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from rlvlmf.training.state_window import StateWindow

    buffer, window = ReplayBuffer(1000, OBS, ACT, FRAME), StateWindow(max_episodes=4)
    manager = CheckpointManager(tmp_path)
    position, saves = 0, []
    for step, lengths in enumerate([(5, 7), (4,), (6, 3, 2)], start=1):
        for length in lengths:
            for _ in range(length):  # the first episode of a chunk continues the one left open
                window.add(position, rng.normal(size=4), None if window.in_episode else rng.normal(size=2))
                position += 1
            window.end_episode()
        window.add(position, rng.normal(size=4), rng.normal(size=2))  # an episode left open
        position += 1
        before = set(segment_bytes(tmp_path)) if (tmp_path / "segments").exists() else set()
        manager.save(step, arrays={}, torch_state={}, meta={}, preferences=None, buffer=buffer, window=window)
        saves.append([f for f in segment_bytes(tmp_path) if f not in before and f.startswith("window-")])
        restored = StateWindow(max_episodes=4)
        CheckpointManager(tmp_path).load(buffer=ReplayBuffer(1000, OBS, ACT, FRAME), window=restored)
        for key, value in window.state_dict().items():
            np.testing.assert_array_equal(restored.state_dict()[key], value, err_msg=key)
    assert all(len(files) == 1 for files in saves)
    # The last save wrote the three episodes that ended since (the first had been saved while
    # open, and is written again now that it is longer) and the one open now, not the window's
    # oldest episode, which the previous save wrote.
    assert len(window.finished) == 4
    with np.load(tmp_path / "segments" / saves[-1][0]) as data:
        assert len(data["starts"]) == 4 and window.finished[0][0] not in data["starts"]
