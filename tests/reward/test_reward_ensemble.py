"""The reward ensemble recovers the ordering of a known reward from synthetic preferences."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from rlvlmf.envs.presets import PRESETS
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import RewardEnsemble, load_reward_model
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.testing.preference_tasks import corner_square_frames, frame_pairs, pairwise_accuracy

SIZE = RewardModelConfig().frame_size  # the presets' reward frame size (64)
ROWS = slice(SIZE - 12, SIZE - 2)  # a band the reference (unpadded) encoder never saw at 64 px


def square_frames(positions: np.ndarray) -> np.ndarray:
    """(N, SIZE, SIZE, 3) uint8 frames with a white 10x10 square in the bottom band, left edge at ``positions``."""
    frames = np.zeros((len(positions), SIZE, SIZE, 3), np.uint8)
    for i, x in enumerate(positions):
        frames[i, ROWS, x:x + 10] = 255
    return frames


def gt_labels(returns_first: np.ndarray, returns_second: np.ndarray) -> np.ndarray:
    return (returns_second > returns_first).astype(np.int64)


def image_pairs(rng: np.random.Generator, n: int) -> tuple[RewardInputs, RewardInputs, np.ndarray]:
    """Single-frame pairs; the true reward is the square's x position (further right is better)."""
    a = rng.integers(0, SIZE - 10, n)
    b = rng.integers(0, SIZE - 10, n)
    keep = a != b
    a, b = a[keep], b[keep]
    first = RewardInputs(square_frames(a)[:, None], None)
    second = RewardInputs(square_frames(b)[:, None], None)
    return first, second, gt_labels(a, b)


def test_image_ensemble_recovers_ordering(rng: np.random.Generator) -> None:
    """The true reward is the x position of a square in the bottom band (rows 52-61 of 64)."""
    config = RewardModelConfig(input="image", frame_size=SIZE, max_epochs=40, heldout_fraction=0.25, lr=1e-3)
    dataset = PreferenceDataset(config.capacity, config.heldout_fraction)
    first, second, labels = image_pairs(rng, 400)
    dataset.add(first, second, labels, rng, gt_labels=labels)
    ensemble = RewardEnsemble(config, seed=0)
    report = ensemble.fit(dataset, rng)
    assert report.heldout_acc > 0.9, report
    assert report.gt_acc > 0.9
    assert report.label_gt_acc == 1.0  # labels are the ground truth here
    assert 1 <= report.epochs <= config.max_epochs
    # The learned reward increases with the square's position on fresh frames.
    positions = np.arange(0, SIZE - 10, 4)
    rewards = ensemble.predict(RewardInputs(square_frames(positions), None))
    assert np.corrcoef(positions, rewards)[0, 1] > 0.9


PRESET_FRAME_SIZES = sorted({preset.reward_frame_size for preset in PRESETS.values()})


@pytest.mark.parametrize("encoder", ["conv", "fls"])
@pytest.mark.parametrize("size", PRESET_FRAME_SIZES)
def test_every_pixel_reaches_the_reward(size: int, encoder: str, rng: np.random.Generator) -> None:
    """The reward's gradient is nonzero at every pixel of each preset's reward frame size."""
    config = RewardModelConfig(frame_size=size, encoder=encoder, ensemble_size=1)
    net = RewardEnsemble(config, seed=0).members[0]
    images = torch.from_numpy(rng.uniform(-0.5, 0.5, (2, 3, size, size)).astype(np.float32)).requires_grad_(True)
    net(images, None).sum().backward()
    reached = images.grad.abs().sum(dim=(0, 1)) > 0
    assert reached.all(), f"{int((~reached).sum())} of {size * size} pixels never reach the reward"


def test_image_ensemble_learns_a_signal_in_the_bottom_right_corner() -> None:
    """Only the brightness of the square at rows/cols 50-63 tells frames apart; the default
    config fits it to >= 0.9 held-out accuracy (the reference encoder stays at chance)."""
    rng = np.random.default_rng(0)
    config = RewardModelConfig(heldout_fraction=0.2, max_epochs=4, early_stop_acc=1.0)
    frames, rewards = corner_square_frames(rng, 1000)
    first, second, labels = frame_pairs(frames, rewards, 1000, rng)
    dataset = PreferenceDataset(config.capacity, config.heldout_fraction)
    dataset.add(first, second, labels, rng, gt_labels=labels)
    ensemble = RewardEnsemble(config, seed=0)
    report = ensemble.fit(dataset, rng)
    fresh, fresh_rewards = corner_square_frames(np.random.default_rng(1), 200)
    accuracy = pairwise_accuracy(ensemble.predict(RewardInputs(fresh, None)), fresh_rewards)
    assert report.heldout_acc >= 0.9 and accuracy >= 0.9, (report, accuracy)


def test_old_format_image_model_fails_with_a_clear_error(tmp_path) -> None:
    config = RewardModelConfig(ensemble_size=1)
    state = RewardEnsemble(config).state()
    path = tmp_path / "old.pt"
    torch.save({**state, "format": 1}, path)  # an image model saved before the convs were padded
    with pytest.raises(UserError, match="older rlvlmf.*train a new one"):
        load_reward_model(path)
    state_only = RewardEnsemble(RewardModelConfig(input="state", state_dim=3, ensemble_size=1))
    torch.save({**state_only.state(), "format": 1}, path)  # state nets did not change: still loads
    assert load_reward_model(path).config == state_only.config
    broken = state_only.state()
    broken["members"][0] = {name: value[..., :1] for name, value in broken["members"][0].items()}
    torch.save(broken, path)
    with pytest.raises(UserError, match="do not fit"):
        load_reward_model(path)


def state_pairs(rng: np.random.Generator, n: int, weights: np.ndarray, t: int) -> tuple[RewardInputs, RewardInputs, np.ndarray]:
    first = rng.normal(size=(n, t, len(weights))).astype(np.float32)
    second = rng.normal(size=(n, t, len(weights))).astype(np.float32)
    # Bounded per-step reward, as the model's tanh output is: then segment sums are representable.
    labels = gt_labels(np.tanh(first @ weights).sum(1), np.tanh(second @ weights).sum(1))
    return RewardInputs(None, first), RewardInputs(None, second), labels


@pytest.mark.parametrize(("segment_length", "dtype"), [(1, "float32"), (5, "float32"), (5, "bfloat16")])
def test_state_ensemble_recovers_linear_reward(rng: np.random.Generator, segment_length: int, dtype: str) -> None:
    weights = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    config = RewardModelConfig(
        input="state", state_dim=4, hidden_sizes=(64, 64), max_epochs=40, heldout_fraction=0.2, lr=1e-3, compute_dtype=dtype
    )
    dataset = PreferenceDataset(config.capacity, config.heldout_fraction)
    first, second, labels = state_pairs(rng, 1200, weights, segment_length)
    dataset.add(first, second, labels, rng, gt_labels=labels)
    report = RewardEnsemble(config, seed=1).fit(dataset, rng)
    assert report.heldout_acc > 0.9, report
    assert report.num_train == len(dataset.train_indices())


def test_both_inputs_and_early_stopping(rng: np.random.Generator) -> None:
    """A frame+state model trains, and early stopping ends the round before max_epochs."""
    config = RewardModelConfig(
        input="both", frame_size=SIZE, state_dim=2, hidden_sizes=(32,), max_epochs=50, early_stop_acc=0.8, lr=1e-3
    )
    first, second, labels = image_pairs(rng, 100)
    n = len(labels)
    first = first._replace(states=rng.normal(size=(n, 1, 2)).astype(np.float32))
    second = second._replace(states=rng.normal(size=(n, 1, 2)).astype(np.float32))
    dataset = PreferenceDataset(1000)
    dataset.add(first, second, labels, rng)
    report = RewardEnsemble(config).fit(dataset, rng)
    assert report.train_acc >= 0.8
    assert report.epochs < config.max_epochs
    assert math.isnan(report.heldout_acc) and math.isnan(report.gt_acc)


def test_no_preference_trains_towards_equal_rewards(rng: np.random.Generator) -> None:
    """Pairs labelled -1 pull the two returns together; with "drop" they are ignored."""
    config = RewardModelConfig(
        input="state", state_dim=3, hidden_sizes=(32,), max_epochs=200, early_stop_acc=1.0, lr=3e-3, batch_size=64
    )
    n = 64
    first = RewardInputs(None, rng.normal(size=(n, 1, 3)).astype(np.float32))
    second = RewardInputs(None, first.states + np.float32(2.0))  # a constant shift the model could easily tell apart
    dataset = PreferenceDataset(1000)
    dataset.add(first, second, np.full(n, -1), rng)
    soft = RewardEnsemble(config, seed=0)
    report = soft.fit(dataset, rng)
    gap = np.abs(soft.segment_returns(second) - soft.segment_returns(first)).mean()
    assert gap < 0.05, gap
    assert math.isnan(report.train_acc)  # no pair has a preference to be right about
    dropped = RewardEnsemble(dataclasses.replace(config, no_preference="drop"), seed=0)
    before = [p.detach().clone() for p in dropped.parameters()]
    assert dropped.fit(dataset, rng).num_train == 0
    assert all(torch.equal(a, b) for a, b in zip(before, dropped.parameters()))


def test_warm_start_and_save_load_round_trip(rng: np.random.Generator, tmp_path) -> None:
    config = RewardModelConfig(input="image", frame_size=SIZE, max_epochs=2)
    dataset = PreferenceDataset(1000)
    first, second, labels = image_pairs(rng, 64)
    dataset.add(first, second, labels, rng)
    ensemble = RewardEnsemble(config)
    ensemble.fit(dataset, rng)
    ensemble.fit(dataset, rng)
    assert ensemble.rounds == 2
    path = tmp_path / "reward.pt"
    ensemble.save(path)
    loaded = load_reward_model(path)
    assert loaded.config == config and loaded.rounds == 2
    frames = RewardInputs(first.frames[:, 0], None)
    np.testing.assert_array_equal(loaded.member_rewards(frames), ensemble.member_rewards(frames))
    # Warm start: the optimizer state came back too, so one more round matches exactly.
    ensemble.fit(dataset, np.random.default_rng(5))
    loaded.fit(dataset, np.random.default_rng(5))
    np.testing.assert_array_equal(loaded.member_rewards(frames), ensemble.member_rewards(frames))


def test_segments_are_sums_and_batching_does_not_change_predictions(rng: np.random.Generator) -> None:
    config = RewardModelConfig(input="state", state_dim=3, hidden_sizes=(16,))
    ensemble = RewardEnsemble(config)
    states = rng.normal(size=(10, 4, 3)).astype(np.float32)
    per_step = ensemble.member_rewards(RewardInputs(None, states))
    assert per_step.shape == (3, 10, 4)
    np.testing.assert_allclose(ensemble.segment_returns(RewardInputs(None, states)), per_step.sum(-1), rtol=1e-6)
    flat = RewardInputs(None, states.reshape(40, 3))
    np.testing.assert_allclose(ensemble.predict(flat, batch_size=7), ensemble.predict(flat), rtol=1e-5, atol=1e-6)


def test_bad_config_and_bad_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="frame_size"):
        RewardModelConfig(input="image", frame_size=24)  # the last conv's input would be 2 px for a 3 px kernel
    with pytest.raises(ConfigError, match="state_dim"):
        RewardModelConfig(input="state")
    with pytest.raises(ConfigError, match="input"):
        RewardModelConfig(input="pixels")  # type: ignore[arg-type]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot read reward model"):
        load_reward_model(bad)


def test_bfloat16_inference_is_close_to_float32(rng: np.random.Generator) -> None:
    config = RewardModelConfig(input="image", frame_size=SIZE)
    exact = RewardEnsemble(config, seed=3)
    fast = RewardEnsemble(dataclasses.replace(config, compute_dtype="bfloat16"), seed=3)
    frames = RewardInputs(rng.integers(0, 255, (32, SIZE, SIZE, 3), dtype=np.uint8), None)
    np.testing.assert_allclose(fast.predict(frames), exact.predict(frames), atol=0.02)


def test_explicit_cpu_device_fits_and_predicts_like_the_default(rng: np.random.Generator) -> None:
    config = RewardModelConfig(input="image", frame_size=SIZE, max_epochs=2, conv_channels=(4, 4, 4, 4))
    dataset = PreferenceDataset(1000)
    first, second, labels = image_pairs(rng, 48)
    dataset.add(first, second, labels, rng)
    frames = RewardInputs(first.frames[:, 0], None)
    default = RewardEnsemble(config, seed=2)
    report = default.fit(dataset, np.random.default_rng(3))
    on_cpu = RewardEnsemble(config, seed=2, device="cpu")
    assert on_cpu.device == torch.device("cpu") and on_cpu.predict_batch_size == config.predict_batch_size
    assert on_cpu.fit(dataset, np.random.default_rng(3)).loss == report.loss
    np.testing.assert_array_equal(on_cpu.predict(frames), default.predict(frames))


def test_bfloat16_fit_on_an_explicit_device_gives_finite_losses(rng: np.random.Generator) -> None:
    config = RewardModelConfig(input="both", frame_size=SIZE, state_dim=2, max_epochs=2, compute_dtype="bfloat16",
                               encoder="fls", conv_channels=(4, 4, 4, 4))
    dataset = PreferenceDataset(1000)
    n = 32
    pairs = [
        RewardInputs(rng.integers(0, 255, (n, 1, SIZE, SIZE, 3), dtype=np.uint8), rng.normal(size=(n, 1, 2)).astype(np.float32))
        for _ in range(2)
    ]
    dataset.add(pairs[0], pairs[1], rng.integers(0, 2, n), rng)
    report = RewardEnsemble(config, device="cpu").fit(dataset, rng)
    assert report.epochs >= 1 and np.isfinite(report.loss)


def test_ensemble_saved_on_one_device_loads_onto_another(rng: np.random.Generator, tmp_path) -> None:
    config = RewardModelConfig(input="state", state_dim=3, hidden_sizes=(16,))
    ensemble = RewardEnsemble(config, seed=1, device="cpu")
    states = RewardInputs(None, rng.normal(size=(20, 3)).astype(np.float32))
    ensemble.save(tmp_path / "r.pt")
    state = torch.load(tmp_path / "r.pt", map_location="cpu", weights_only=True)
    np.testing.assert_array_equal(RewardEnsemble.from_state(state, device="auto").predict(states), ensemble.predict(states))
    np.testing.assert_array_equal(load_reward_model(tmp_path / "r.pt", device="cpu").predict(states), ensemble.predict(states))
