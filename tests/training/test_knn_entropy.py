"""k-NN state entropy: exact distances, self excluded, bounded reference set, running std."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvlmf.training.buffer import ReplayBuffer
from rlvlmf.training.knn_entropy import KNNStateEntropy, RunningMeanStd, kth_neighbour_distance


def line_states(n: int, spacing: float = 1.0) -> np.ndarray:
    """``(n, 2)`` states on a line, ``spacing`` apart."""
    return np.stack([np.arange(n) * spacing, np.zeros(n)], axis=1).astype(np.float32)


def test_kth_distance_on_a_line_excludes_self() -> None:
    points = torch.tensor([[float(i), 0.0] for i in range(20)])
    ids = torch.arange(20)
    d = kth_neighbour_distance(points, points, k=2, exclude=(ids, ids), chunk_size=3)
    # Interior points: neighbours at distance 1, 1, so the 2nd is 1; the ends have 1, 2.
    assert d[0] == 2 and d[19] == 2 and (d[1:19] == 1).all()
    with_self = kth_neighbour_distance(points, points, k=2)
    assert with_self[0] == 1 and with_self[5] == 1  # itself (0) is then the nearest


def test_repeated_states_still_count_as_neighbours() -> None:
    points = torch.zeros(6, 2)  # e.g. a fixed initial state seen six times
    ids = torch.arange(6)
    assert (kth_neighbour_distance(points, points, k=5, exclude=(ids, ids)) == 0).all()


def test_reward_is_normalised_and_reference_is_bounded(rng: np.random.Generator) -> None:
    small = KNNStateEntropy(k=5, reference_size=1000)
    states = line_states(300, spacing=2.0)
    slots = rng.integers(0, 300, 64)
    reward = small.reward(states, slots, rng)
    assert reward.shape == (64, 1)
    # All states used: interior 5th neighbour is 3 steps away (2, 2, 4, 4, 6) -> 6.0, ends more.
    raw = reward[:, 0] * small.stats.std
    interior = (slots >= 3) & (slots <= 296)
    np.testing.assert_allclose(raw[interior].numpy(), 6.0, rtol=1e-5)
    # Bounded reference: a subsample can only push the k-th neighbour further away.
    bounded = KNNStateEntropy(k=5, reference_size=50)
    raw_bounded = bounded.reward(states, slots, rng)[:, 0] * bounded.stats.std
    assert (raw_bounded >= raw - 1e-4).all() and (raw_bounded > raw).any()


def test_running_std_matches_numpy_and_round_trips(rng: np.random.Generator) -> None:
    stats = RunningMeanStd()
    chunks = [rng.normal(3.0, 2.0, size=n) for n in (10, 100, 7)]
    for chunk in chunks:
        stats.update(chunk)
    everything = np.concatenate(chunks)
    assert stats.mean == pytest.approx(everything.mean(), rel=1e-4)
    assert stats.std == pytest.approx(everything.std(), rel=1e-4)
    estimator = KNNStateEntropy()
    estimator.stats = stats
    restored = KNNStateEntropy()
    restored.load_state_dict(estimator.state_dict())
    assert restored.stats == stats


def test_explicit_cpu_device_gives_the_same_rewards(rng: np.random.Generator) -> None:
    states = rng.normal(size=(300, 2)).astype(np.float32)
    slots = np.arange(0, 300, 7)
    default, on_cpu = KNNStateEntropy(k=3, reference_size=100), KNNStateEntropy(k=3, reference_size=100, device="cpu")
    expected = default.reward(states, slots, np.random.default_rng(1))
    got = on_cpu.reward(states, slots, np.random.default_rng(1))
    assert got.device == torch.device("cpu") and torch.equal(got, expected)
    assert on_cpu.state_dict() == default.state_dict()


def test_rewards_read_the_buffers_stored_observations(rng: np.random.Generator) -> None:
    buffer = ReplayBuffer(capacity=400, obs_dim=2, action_dim=1)
    states = line_states(120, spacing=2.0)
    for obs in states:
        buffer.add(obs, np.zeros(1), 0.0, obs, terminated=False, truncated=False)
    assert buffer.observations.shape == (120, 2) and np.shares_memory(buffer.observations, buffer.obs)
    slots = buffer.sample_slots(32, rng)
    from_buffer = KNNStateEntropy(k=5).reward(buffer.observations, slots, np.random.default_rng(0))
    from_array = KNNStateEntropy(k=5).reward(states, slots, np.random.default_rng(0))
    assert torch.equal(from_buffer, from_array)
    with pytest.raises(ValueError, match="more than k=5 states"):
        KNNStateEntropy(k=5).reward(states[:5], np.arange(5), rng)
