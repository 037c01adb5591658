"""Preference dataset: held-out split, capacity, validation and save/load."""

from __future__ import annotations

import numpy as np
import pytest

from rlvlmf.errors import UserError
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.preferences import UNKNOWN_LABEL, PreferenceDataset


def pairs(n: int, start: int = 0, t: int = 1) -> tuple[RewardInputs, RewardInputs, np.ndarray]:
    """Pairs whose frames and states encode their index, so order is checkable."""
    ids = np.arange(start, start + n)
    frames = np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None, None], (n, t, 4, 4, 3)).copy()
    states = np.broadcast_to(ids.astype(np.float32)[:, None, None], (n, t, 2)).copy()
    return RewardInputs(frames, states), RewardInputs(frames, -states), ids % 2


def test_heldout_split_is_fixed_and_seeded() -> None:
    dataset = PreferenceDataset(capacity=1000, heldout_fraction=0.3)
    for start in (0, 200):
        first, second, labels = pairs(200, start)
        dataset.add(first, second, labels, np.random.default_rng(start))
    held, train = dataset.heldout_indices(), dataset.train_indices()
    assert len(held) + len(train) == 400 and not set(held) & set(train)
    assert 0.2 < len(held) / 400 < 0.4
    again = PreferenceDataset(capacity=1000, heldout_fraction=0.3)
    for start in (0, 200):
        first, second, labels = pairs(200, start)
        again.add(first, second, labels, np.random.default_rng(start))
    np.testing.assert_array_equal(again.heldout_indices(), held)


def test_capacity_keeps_the_newest(rng: np.random.Generator) -> None:
    dataset = PreferenceDataset(capacity=50)
    for start in range(0, 130, 13):
        dataset.add(*pairs(13, start), rng)
    assert len(dataset) == 50 and dataset.total_added == 130
    everything = dataset.all()
    np.testing.assert_array_equal(everything.first.states[:, 0, 0], np.arange(80, 130))  # oldest first
    np.testing.assert_array_equal(everything.labels, np.arange(80, 130) % 2)
    assert (everything.gt_labels == UNKNOWN_LABEL).all()
    big = PreferenceDataset(capacity=10)
    big.add(*pairs(25), rng)  # more at once than fit
    np.testing.assert_array_equal(big.all().second.states[:, 0, 0], -np.arange(15, 25))


def test_save_load_round_trip(rng: np.random.Generator, tmp_path) -> None:
    dataset = PreferenceDataset(capacity=30, heldout_fraction=0.2)
    first, second, labels = pairs(45, t=3)
    labels[::5] = -1
    dataset.add(first, second, labels, rng, gt_labels=np.arange(45) % 2, query_ids=np.arange(45) + 100)
    path = tmp_path / "prefs.npz"
    dataset.save(path)
    loaded = PreferenceDataset.load(path)
    assert len(loaded) == 30 and loaded.total_added == 45 and loaded.capacity == 30
    a, b = dataset.all(), loaded.all()
    for x, y in zip(a.first + a.second + (a.labels, a.gt_labels), b.first + b.second + (b.labels, b.gt_labels)):
        np.testing.assert_array_equal(x, y)
    assert len(loaded.heldout_indices()) == len(dataset.heldout_indices())
    loaded.add(*pairs(5, 45, t=3), rng)  # keeps working as a FIFO after loading
    assert loaded.all().first.states[-1, 0, 0] == 49
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read preference dataset"):
        PreferenceDataset.load(tmp_path / "junk.npz")


def test_bad_input_is_refused(rng: np.random.Generator) -> None:
    dataset = PreferenceDataset(capacity=10)
    first, second, labels = pairs(4)
    with pytest.raises(ValueError, match="0, 1 or -1"):
        dataset.add(first, second, np.array([0, 1, 2, 0]), rng)
    with pytest.raises(ValueError, match="uint8"):
        dataset.add(first._replace(frames=first.frames.astype(np.float32)), second, labels, rng)
    dataset.add(first, second, labels, rng)
    with pytest.raises(ValueError, match="same fields"):
        dataset.add(RewardInputs(None, first.states), RewardInputs(None, second.states), labels, rng)
