"""Replay buffer: wrapping, relabelling every slot, episodes, exact state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlvlmf.errors import UserError
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.training.buffer import ReplayBuffer, bytes_per_transition


def fill(buffer: ReplayBuffer, steps: int, episode_length: int, rng: np.random.Generator) -> None:
    """Add ``steps`` transitions; obs[0] is the stream position, so slots are traceable."""
    for t in range(buffer.total_added, buffer.total_added + steps):
        obs = np.full(buffer.obs_dim, t, np.float32)
        frame = None
        if buffer.frame_size is not None:
            frame = np.full((buffer.frame_size, buffer.frame_size, 3), t % 251, np.uint8)
        done = (t + 1) % episode_length == 0
        buffer.add(obs, rng.uniform(-1, 1, buffer.action_dim), float(t), obs + 1, terminated=False, truncated=done, frame=frame)


def test_relabel_covers_every_slot_after_wrapping(rng: np.random.Generator) -> None:
    buffer = ReplayBuffer(capacity=50, obs_dim=3, action_dim=2, frame_size=4)
    fill(buffer, 137, episode_length=10, rng=rng)
    assert len(buffer) == 50
    # Each slot holds one of the newest 50 transitions.
    assert sorted(buffer.obs[:, 0].astype(int)) == list(range(87, 137))
    seen = []

    def reward_fn(inputs: RewardInputs) -> np.ndarray:
        seen.append(len(inputs.frames))
        # Reward from the frame and state of each slot: ties the result to the slot's content.
        return inputs.frames[:, 0, 0, 0].astype(np.float32) + inputs.states[:, 0]

    buffer.relabel(reward_fn, state_kind="obs", batch_size=16)
    assert sum(seen) == 50 and max(seen) == 16
    expected = (buffer.obs[:, 0] % 251) + buffer.obs[:, 0]
    np.testing.assert_array_equal(buffer.learned_reward, expected)


def test_state_only_buffer_and_sample(rng: np.random.Generator) -> None:
    buffer = ReplayBuffer(capacity=20, obs_dim=2, action_dim=1)
    assert buffer.frames is None
    fill(buffer, 30, episode_length=7, rng=rng)
    buffer.relabel(lambda inputs: inputs.states.sum(1), state_kind="obs_action")
    np.testing.assert_allclose(buffer.learned_reward, buffer.obs.sum(1) + buffer.action[:, 0], rtol=1e-6)
    batch = buffer.sample(64, rng, reward="env")
    assert batch.obs.shape == (64, 2) and batch.reward.shape == (64, 1) and batch.not_done.shape == (64, 1)
    # env reward was the stream position, which is obs[0]
    np.testing.assert_array_equal(batch.reward[:, 0].numpy(), batch.obs[:, 0].numpy())
    assert (batch.not_done == 1).all()  # only truncations here: they bootstrap
    learned = buffer.sample(8, rng)
    assert learned.reward.dtype == learned.obs.dtype


def test_recent_episodes_are_whole_and_in_order(rng: np.random.Generator) -> None:
    buffer = ReplayBuffer(capacity=25, obs_dim=1, action_dim=1)
    fill(buffer, 48, episode_length=10, rng=rng)  # episodes 0-3 done, 4 running; 0 and 1 overwritten
    episodes = buffer.recent_episodes(10)
    assert [int(buffer.obs[ep[0], 0]) for ep in episodes] == [30]  # episode 2 lost its first step
    (ep,) = episodes
    np.testing.assert_array_equal(buffer.obs[ep, 0], np.arange(30, 40))
    np.testing.assert_array_equal(buffer.step[ep], np.arange(10))
    assert (buffer.episode[ep] == 3).all()
    fill(buffer, 2, episode_length=10, rng=rng)  # finishes episode 4, which wraps around the end
    last = buffer.recent_episodes(1)[0]
    np.testing.assert_array_equal(buffer.obs[last, 0], np.arange(40, 50))
    assert buffer.recent_episodes(0) == []


def test_state_round_trip_is_exact(rng: np.random.Generator, tmp_path) -> None:
    buffer = ReplayBuffer(capacity=40, obs_dim=3, action_dim=2, frame_size=5)
    fill(buffer, 57, episode_length=9, rng=rng)
    buffer.relabel(lambda inputs: inputs.frames.mean(axis=(1, 2, 3)).astype(np.float32), state_kind=None)
    path = tmp_path / "buffer.npz"
    buffer.save(path)
    loaded = ReplayBuffer.load(path)
    for name in ReplayBuffer._ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(buffer, name))
    assert loaded.recent_episodes(5)[-1].tolist() == buffer.recent_episodes(5)[-1].tolist()
    # Both continue identically.
    fill(buffer, 11, episode_length=9, rng=np.random.default_rng(1))
    fill(loaded, 11, episode_length=9, rng=np.random.default_rng(1))
    a, b = buffer.sample(32, np.random.default_rng(2)), loaded.sample(32, np.random.default_rng(2))
    for x, y in zip(a, b):
        assert (x == y).all()
    with pytest.raises(UserError, match="capacity"):
        ReplayBuffer(capacity=41, obs_dim=3, action_dim=2, frame_size=5).load_state_dict(buffer.state_dict())


def test_bytes_per_transition_matches_arrays() -> None:
    buffer = ReplayBuffer(capacity=10, obs_dim=39, action_dim=4, frame_size=64)
    arrays = [getattr(buffer, name) for name in ReplayBuffer._ARRAYS]
    assert sum(a.nbytes for a in arrays) == 10 * bytes_per_transition(39, 4, 64)
    assert bytes_per_transition(39, 4, None) == bytes_per_transition(39, 4, 64) - 64 * 64 * 3


def test_frames_are_required_and_checked(rng: np.random.Generator) -> None:
    buffer = ReplayBuffer(capacity=4, obs_dim=1, action_dim=1, frame_size=8)
    with pytest.raises(ValueError, match="uint8 frames"):
        buffer.add(np.zeros(1), np.zeros(1), 0.0, np.zeros(1), False, False, frame=None)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1, rng)


def test_a_batch_for_a_device_is_one_block_with_the_same_values(rng: np.random.Generator) -> None:
    buffer = ReplayBuffer(capacity=50, obs_dim=3, action_dim=2)
    for t in range(40):
        buffer.add(rng.normal(size=3), rng.normal(size=2), float(t), rng.normal(size=3), terminated=t % 7 == 0, truncated=False)
    buffer.learned_reward[:40] = rng.normal(size=40)
    slots = buffer.sample_slots(16, rng)
    for reward in ("learned", "env"):
        plain = buffer.batch(slots, reward)
        packed = buffer.batch(slots, reward, device=torch.device("cpu"))
        for a, b in zip(plain, packed):
            assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        # One allocation holds the whole batch (one host-to-device copy on a GPU).
        assert len({t.untyped_storage().data_ptr() for t in packed}) == 1


def test_train_config_checks_the_device_name() -> None:
    from rlvlmf.errors import ConfigError
    from rlvlmf.training.builder import build_config

    assert build_config("pendulum", ["device=cuda:1"]).device == "cuda:1"  # checked against the hardware at start
    assert build_config("pendulum").device == "auto"
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        build_config("pendulum", ["device=gpu"])
