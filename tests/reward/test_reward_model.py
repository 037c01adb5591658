"""The public reward-model API: ``rlvlmf.load_reward_model(path)(frames=..., obs=...)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import rlvlmf
from rlvlmf.envs.frames import resize_frame
from rlvlmf.errors import UserError
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.reward.model import RewardModel

TINY = {"frame_size": 48, "conv_channels": (4, 4, 4, 4), "ensemble_size": 2, "predict_batch_size": 3}


def _saved(tmp_path: Path, **config: object) -> tuple[Path, RewardEnsemble]:
    ensemble = RewardEnsemble(RewardModelConfig(**{**TINY, **config}), seed=3)  # type: ignore[arg-type]
    path = tmp_path / "model.pt"
    ensemble.save(path)
    return path, ensemble


def test_image_model_scores_frames_of_any_size_like_the_ensemble(tmp_path: Path, rng: np.random.Generator) -> None:
    path, ensemble = _saved(tmp_path)
    model = rlvlmf.load_reward_model(path, device="cpu")
    assert isinstance(model, RewardModel) and model.uses_frames and not model.uses_states
    frames = rng.integers(0, 256, size=(7, 100, 80, 3), dtype=np.uint8)  # not square, not 48: resized
    rewards = model(frames=frames)
    assert rewards.shape == (7,) and rewards.dtype == np.float32
    small = np.stack([resize_frame(f, 48) for f in frames])
    expected = ensemble.predict(RewardInputs(small, None))
    np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)
    # Batches of 3 (predict_batch_size) give what one pass gives; no gradients are kept.
    np.testing.assert_allclose(RewardModel(ensemble, device="cpu", batch_size=100)(frames=frames), rewards, rtol=1e-5, atol=1e-6)
    assert model(frames=np.zeros((0, 20, 20, 3), np.uint8)).shape == (0,)
    assert all(p.grad is None for p in model.members.parameters())


def test_state_model_takes_obs_and_builds_its_states(tmp_path: Path, rng: np.random.Generator) -> None:
    path, ensemble = _saved(tmp_path, input="state", state_dim=5, state_kind="obs_action", hidden_sizes=(8,))
    model = rlvlmf.load_reward_model(path, device="cpu")
    obs, actions = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    states = model.states(obs, actions, obs + 1)
    assert states.shape == (4, 5)
    np.testing.assert_allclose(model(obs=states), ensemble.predict(RewardInputs(None, states)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pass obs"):
        model(frames=None)
    with pytest.raises(ValueError, match="5 features"):
        model(obs=obs)
    with pytest.raises(ValueError, match="pass the actions"):
        model.states(obs, None, obs)


def test_bad_frames_and_files_are_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    model = rlvlmf.load_reward_model(path, device="cpu")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8"):
        model(frames=np.zeros((2, 48, 48, 3), np.float32))
    with pytest.raises(ValueError, match="pass frames"):
        model()
    with pytest.raises(UserError, match="cannot read reward model"):
        rlvlmf.load_reward_model(tmp_path / "missing.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(tmp_path: Path, rng: np.random.Generator) -> None:
    path, _ = _saved(tmp_path)
    frames = rng.integers(0, 256, size=(9, 64, 64, 3), dtype=np.uint8)
    on_gpu = rlvlmf.load_reward_model(path, device="cuda")
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu(frames=frames), rlvlmf.load_reward_model(path, device="cpu")(frames=frames),
                               rtol=1e-3, atol=1e-4)
