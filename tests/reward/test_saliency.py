"""Saliency: an FLS reward model and a plain one, fit on a synthetic task, look where the reward is.

The task: frames of random noise with a distracting bright square somewhere, and a fixed
square region whose brightness is the reward. A model that learned the task must look at
that region, and both kinds of map must say so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlvlmf.errors import UserError
from rlvlmf.feedback.images import encode_png
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import RewardEnsemble, load_reward_model
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.reward.saliency import FLSConvEncoder, gradient_saliency, overlay, project_to_pixels, reward_model_saliency

SIZE = 48
REGION = (slice(30, 44), slice(30, 44))
REPO = Path(__file__).resolve().parents[2]


def synthetic_frames(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, SIZE, SIZE, 3)`` uint8 frames and their rewards (mean brightness of REGION)."""
    frames = rng.integers(0, 128, (n, SIZE, SIZE, 3)).astype(np.float64)
    for frame in frames:  # a distractor: as bright as the region can be, anywhere
        row, col = rng.integers(0, SIZE - 14, 2)
        frame[row : row + 14, col : col + 14] += rng.uniform(0, 127)
    frames[:, REGION[0], REGION[1]] = rng.integers(0, 128, (n, 14, 14, 3)) + rng.uniform(0, 127, (n, 1, 1, 1))
    frames = frames.astype(np.uint8)
    return frames, frames[:, REGION[0], REGION[1]].mean(axis=(1, 2, 3))


def fit_model(encoder: str, seed: int = 0) -> RewardEnsemble:
    rng = np.random.default_rng(seed)
    config = RewardModelConfig(
        frame_size=SIZE, conv_channels=(8, 16, 16, 16), encoder=encoder, ensemble_size=1, lr=1e-3, max_epochs=6,
        early_stop_acc=1.0,
    )
    model = RewardEnsemble(config, seed=seed)
    frames, rewards = synthetic_frames(rng, 1200)
    a, b = rng.integers(0, len(frames), (2, 1600))
    dataset = PreferenceDataset(capacity=10_000)
    labels = (rewards[b] > rewards[a]).astype(np.int64)
    dataset.add(RewardInputs(frames[a][:, None], None), RewardInputs(frames[b][:, None], None), labels, rng, gt_labels=labels)
    report = model.fit(dataset, rng)
    assert report.train_acc > 0.8, report  # it learned the task; otherwise its saliency means nothing
    return model


@pytest.fixture(scope="module")
def fls_model() -> RewardEnsemble:
    return fit_model("fls")


@pytest.fixture(scope="module")
def conv_model() -> RewardEnsemble:
    return fit_model("conv")


def _region_contrast(maps: np.ndarray, margin: int = 0) -> tuple[float, float]:
    """(mean map inside REGION / mean outside, share of frames whose peak lies within ``margin`` px of REGION)."""
    inside = np.zeros((SIZE, SIZE), bool)
    inside[REGION] = True
    near = np.zeros((SIZE, SIZE), bool)
    near[REGION[0].start - margin : REGION[0].stop + margin, REGION[1].start - margin : REGION[1].stop + margin] = True
    mean = maps.mean(axis=0)
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    return float(mean[inside].mean() / mean[~inside].mean()), float(np.mean([near[p] for p in peaks]))


def test_fls_attention_peaks_on_the_rewarded_region(fls_model: RewardEnsemble) -> None:
    frames, rewards = synthetic_frames(np.random.default_rng(1), 64)
    assert np.corrcoef(fls_model.predict(RewardInputs(frames, None)), rewards)[0, 1] > 0.8
    maps = reward_model_saliency(fls_model, frames, "fls")
    assert maps.shape == (64, SIZE, SIZE) and maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    # An attention cell sees an 11-pixel window every 6 pixels, so the map is only as sharp as
    # one cell: a peak counts when it is within one cell step of the region.
    contrast, peaks_near = _region_contrast(maps, margin=fls_model.members[0].encoder.receptive_field[1])
    assert contrast > 1.5 and peaks_near > 0.9, (contrast, peaks_near)
    # "auto" picks the attention map for an FLS model.
    np.testing.assert_allclose(reward_model_saliency(fls_model, frames[:4]), maps[:4], rtol=1e-5)


def test_gradient_saliency_peaks_on_the_rewarded_region(conv_model: RewardEnsemble) -> None:
    frames, _ = synthetic_frames(np.random.default_rng(2), 64)
    maps = reward_model_saliency(conv_model, frames)  # auto: a plain conv model gets gradients
    contrast, peaks_inside = _region_contrast(maps)
    assert contrast > 3.0 and peaks_inside > 0.8, (contrast, peaks_inside)
    with pytest.raises(UserError, match="no attention layer"):
        reward_model_saliency(conv_model, frames, "fls")


def test_gradient_saliency_of_a_known_function(rng: np.random.Generator) -> None:
    images = torch.from_numpy(rng.normal(size=(3, 3, 8, 8)).astype(np.float32))
    weights = torch.zeros(3, 8, 8)
    weights[1, 2, 5] = 2.0  # the reward reads one pixel of one channel, plus a weaker one
    weights[0, 6, 1] = -0.5
    maps = gradient_saliency(lambda x: (x * weights).sum(dim=(1, 2, 3)), images)
    expected = np.zeros((8, 8), np.float32)
    expected[2, 5], expected[6, 1] = 1.0, 0.25
    np.testing.assert_allclose(maps, np.broadcast_to(expected, maps.shape), atol=1e-6)
    smooth = gradient_saliency(lambda x: (x**2).sum(dim=(1, 2, 3)), images, samples=4, noise_std=0.1, rng=rng)
    assert smooth.shape == (3, 8, 8) and smooth.max() == pytest.approx(1.0)


def test_receptive_field_projection_and_overlay() -> None:
    encoder = FLSConvEncoder((4, 4, 4, 4))
    # 5x5 stride 3 padded by 2, then 3x3 stride 2 padded by 1: windows of 11 every 6, from -5.
    assert encoder.receptive_field == (11, 6, -5)
    _, weights = encoder.attend(torch.zeros(1, 3, SIZE, SIZE))
    assert weights.shape == (1, 1, 8, 8)
    weights = torch.zeros(1, 1, 8, 8)
    weights[0, 0, 0, 6] = 1.0
    painted = project_to_pixels(weights, encoder.receptive_field, (SIZE, SIZE))[0, 0].numpy()
    # Cell (0, 6) sees rows -5..5 and columns 31..41; the rows above 0 are padding.
    assert painted[:6, 31:42].min() > 0 and painted[6:].max() == 0
    assert painted[:, :31].max() == 0 and painted[:, 42:].max() == 0
    # The last cell's window ends at the frame's last pixel: every pixel belongs to some cell.
    covered = project_to_pixels(torch.ones(1, 1, 8, 8), encoder.receptive_field, (SIZE, SIZE))
    assert covered.min() > 0
    frame = np.full((4, 4, 3), 100, np.uint8)
    shown = overlay(frame, np.eye(4), scale=3)
    assert shown.shape == (12, 12, 3)
    assert (shown[0, 0] != 100).any() and (shown[0, 11] == 100).all()  # only salient pixels are tinted


def test_saliency_cli_writes_overlays(tmp_path: Path, fls_model: RewardEnsemble) -> None:
    model_path = tmp_path / "reward.pt"
    fls_model.save(model_path)
    assert isinstance(load_reward_model(model_path).members[0].encoder, FLSConvEncoder)
    frames, _ = synthetic_frames(np.random.default_rng(3), 2)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        # Twice the model's size: the command resizes.
        paths[-1].write_bytes(encode_png(frame.repeat(2, axis=0).repeat(2, axis=1)))
    out = tmp_path / "maps"
    base = [sys.executable, "-m", "rlvlmf", "reward", "saliency", "--model", str(model_path), "--out", str(out)]
    done = subprocess.run([*base, "--frames", *map(str, paths)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == ["f0_saliency.png", "f1_saliency.png"]
    with Image.open(written[0]) as image:
        assert image.size[0] >= SIZE and np.asarray(image).std() > 0
    missing = subprocess.run(
        [*base, "--frames", str(tmp_path / "nope.png")], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert missing.returncode == 2 and "nope.png" in missing.stderr and "Traceback" not in missing.stderr
