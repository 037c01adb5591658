"""``rlvlmf.LearnedReward``: a Gymnasium wrapper any RL library can train on."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlvlmf
from rlvlmf.errors import UserError
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.testing import point_env

ENV_ID = "rlvlmf.testing.point_env:PointReach-v0"


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    config = RewardModelConfig(frame_size=point_env.FRAME_SIZE, conv_channels=(4, 4, 4, 4), ensemble_size=2)
    path = tmp_path / "reward_model.pt"
    RewardEnsemble(config, seed=0).save(path)
    return path


def test_reward_is_the_models_and_the_envs_is_kept(model_path: Path) -> None:
    model = rlvlmf.load_reward_model(model_path, device="cpu")
    env = rlvlmf.LearnedReward(gym.make(ENV_ID, render_mode="rgb_array"), model)
    plain = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=1)
    plain.reset(seed=1)
    action = np.array([0.5, -0.2], np.float32)
    _, reward, _, _, info = env.step(action)
    _, env_reward, _, _, _ = plain.step(action)
    assert info["env_reward"] == env_reward and "success" in info
    assert reward == pytest.approx(float(model(frames=np.asarray(plain.render())[None])[0]))
    assert reward != pytest.approx(env_reward)


def test_passes_gymnasiums_env_checker(model_path: Path) -> None:
    env = rlvlmf.LearnedReward(gym.make(ENV_ID, render_mode="rgb_array"), str(model_path), device="cpu")
    check_env(env)  # also rebuilds it through env.spec.make(), i.e. the recorded constructor args
    assert env.spec is not None and env.spec.additional_wrappers[-1].name == "LearnedReward"


def test_state_model_reads_the_transition(tmp_path: Path) -> None:
    config = RewardModelConfig(input="state", state_dim=4 + 2, state_kind="obs_action", hidden_sizes=(8,), ensemble_size=2)
    path = tmp_path / "state_model.pt"
    RewardEnsemble(config, seed=0).save(path)
    model = rlvlmf.load_reward_model(path, device="cpu")
    env = rlvlmf.LearnedReward(gym.make(ENV_ID), model)  # a state model needs no frames
    obs, _ = env.reset(seed=0)
    action = np.array([0.1, 0.3], np.float32)
    _, reward, _, _, _ = env.step(action)
    assert reward == pytest.approx(float(model(obs=np.concatenate([obs, action])[None])[0]))


def test_a_frame_model_needs_rgb_array_frames(model_path: Path) -> None:
    with pytest.raises(UserError, match="render_mode=\"rgb_array\""):
        rlvlmf.LearnedReward(gym.make(ENV_ID), model_path)


def test_stable_baselines3_sac_trains_on_it(model_path: Path) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    env = rlvlmf.LearnedReward(gym.make(ENV_ID, render_mode="rgb_array"), model_path, device="cpu")
    agent = sb3.SAC("MlpPolicy", env, learning_starts=100, batch_size=32, buffer_size=1000, train_freq=1,
                    policy_kwargs={"net_arch": [16, 16]}, device="cpu", seed=0)
    agent.learn(total_timesteps=300)
    assert agent.num_timesteps == 300 and agent.replay_buffer.size() == 300
    model = rlvlmf.load_reward_model(model_path, device="cpu")
    stored = agent.replay_buffer.rewards[:300, 0]
    assert np.isfinite(stored).all() and len(np.unique(stored)) > 10  # learned rewards, not a constant
    assert stored.min() >= -1.0 and stored.max() <= 1.0  # the image head ends in tanh
    frame = env.render()
    assert model(frames=frame[None]).shape == (1,)
