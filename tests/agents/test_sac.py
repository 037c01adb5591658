"""SAC learns a one-step task, resets its critic, and resumes exactly from its state."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rlvlmf.agents.batch import TransitionBatch
from rlvlmf.agents.sac import METAWORLD, SAC, SACConfig
from rlvlmf.errors import ConfigError
from rlvlmf.training.buffer import ReplayBuffer

SMALL = SACConfig(hidden_sizes=(64, 64), batch_size=128, actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-3, init_temperature=0.01)


def bandit_buffer(rng: np.random.Generator, agent: SAC | None, steps: int, buffer: ReplayBuffer | None = None) -> ReplayBuffer:
    """One-step episodes: reward -(a - target(obs))^2 with target(obs) = 0.5 * obs."""
    buffer = buffer or ReplayBuffer(capacity=4000, obs_dim=1, action_dim=1)
    for _ in range(steps):
        obs = rng.uniform(-1, 1, 1).astype(np.float32)
        action = rng.uniform(-1, 1, 1) if agent is None else agent.act(obs)
        reward = -float((action[0] - 0.5 * obs[0]) ** 2)
        buffer.add(obs, action, reward, obs, terminated=True, truncated=False)
    return buffer


def test_sac_learns_a_contextual_bandit(rng: np.random.Generator) -> None:
    agent = SAC(1, 1, SMALL, seed=0)
    buffer = bandit_buffer(rng, None, 1000)
    for i in range(400):
        metrics = agent.update(buffer.sample(SMALL.batch_size, rng, reward="env"))
        if i % 100 == 99:
            bandit_buffer(rng, agent, 200, buffer)
    obs = np.linspace(-1, 1, 9, dtype=np.float32)[:, None]
    actions = agent.act(obs, deterministic=True)
    assert actions.shape == (9, 1)
    np.testing.assert_allclose(actions[:, 0], 0.5 * obs[:, 0], atol=0.15)
    assert set(metrics) >= {"critic_loss", "q", "actor_loss", "alpha_loss", "alpha", "entropy"}
    assert metrics["q"] < 0  # Q estimates the (negative) reward, no bootstrapping at terminals


def test_state_dict_round_trip_is_exact(rng: np.random.Generator) -> None:
    config = SACConfig(hidden_sizes=(32, 32), batch_size=64)
    agent = SAC(3, 2, config, seed=1)
    buffer = ReplayBuffer(capacity=500, obs_dim=3, action_dim=2)
    for t in range(300):
        obs = rng.normal(size=3).astype(np.float32)
        buffer.add(obs, rng.uniform(-1, 1, 2), float(obs[0]), obs * 0.9, terminated=False, truncated=t % 50 == 49)
    for _ in range(5):
        agent.update(buffer.sample(64, rng, reward="env"))
    blob = io.BytesIO()
    torch.save(agent.state_dict(), blob)
    blob.seek(0)
    restored = SAC(3, 2, config, seed=99)
    restored.load_state_dict(torch.load(blob, weights_only=True))
    obs = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(restored.act(obs), agent.act(obs))  # same exploration noise too
    batch = buffer.sample(64, rng, reward="env")
    assert restored.update(batch) == agent.update(batch)
    for a, b in zip(restored.critic_target.parameters(), agent.critic_target.parameters()):
        assert torch.equal(a, b)
    assert restored.updates == agent.updates == 6


def test_reset_critic_keeps_actor_and_resets_optimizer(rng: np.random.Generator) -> None:
    agent = SAC(2, 1, SACConfig(hidden_sizes=(16,), batch_size=8), seed=0)
    batch_obs = torch.randn(8, 2)
    batch = TransitionBatch(batch_obs, torch.zeros(8, 1), torch.ones(8, 1), batch_obs, torch.ones(8, 1))
    for _ in range(3):
        agent.update(batch)
    actor_before = [p.clone() for p in agent.actor.parameters()]
    critic_before = [p.clone() for p in agent.critic.parameters()]
    agent.reset_critic()
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(agent.critic.parameters(), agent.critic_target.parameters()))
    assert agent.critic_optimizer.state_dict()["state"] == {}


def test_actions_are_bounded_and_configs_validated(rng: np.random.Generator) -> None:
    agent = SAC(5, 3, METAWORLD, seed=0)
    actions = agent.act(rng.normal(size=(100, 5)) * 100)
    assert actions.shape == (100, 3) and np.abs(actions).max() <= 1.0
    assert agent.act(np.zeros(5, np.float32), deterministic=True).shape == (3,)
    assert agent.alpha.item() == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="log_std_min"):
        SACConfig(log_std_min=2.0, log_std_max=-5.0)
    with pytest.raises(ConfigError, match="matmul_dtype"):
        SACConfig(matmul_dtype="float16")  # type: ignore[arg-type]


def test_bfloat16_matmuls_run(rng: np.random.Generator) -> None:
    agent = SAC(3, 2, SACConfig(hidden_sizes=(32, 32), batch_size=16, matmul_dtype="bfloat16"), seed=0)
    obs = torch.randn(16, 3)
    metrics = agent.update(TransitionBatch(obs, torch.zeros(16, 2), torch.ones(16, 1), obs, torch.ones(16, 1)))
    assert all(np.isfinite(v) for v in metrics.values())
    assert agent.act(obs.numpy()).dtype == np.float32


# ---------------------------------------------------------------- devices
NO_CUDA = not torch.cuda.is_available()


def _updates(agent: SAC, buffer: ReplayBuffer, device: torch.device | None, steps: int = 6) -> list[dict[str, float]]:
    rng = np.random.default_rng(7)
    return [agent.update(buffer.batch(buffer.sample_slots(64, rng), reward="env", device=device)) for _ in range(steps)]


def _small_buffer(rng: np.random.Generator) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=500, obs_dim=3, action_dim=2)
    for t in range(300):
        obs = rng.normal(size=3).astype(np.float32)
        buffer.add(obs, rng.uniform(-1, 1, 2), float(obs[0]), obs * 0.9, terminated=t % 37 == 0, truncated=t % 50 == 49)
    return buffer


@pytest.mark.skipif(not NO_CUDA, reason="checks that auto means the CPU where torch sees no GPU")
def test_device_cpu_and_auto_give_the_default_agent_bit_for_bit(rng: np.random.Generator) -> None:
    config = SACConfig(hidden_sizes=(32, 32), batch_size=64)
    buffer = _small_buffer(rng)
    default = SAC(3, 2, config, seed=4)
    expected = _updates(default, buffer, None)
    for device in ("cpu", "auto"):
        agent = SAC(3, 2, config, seed=4, device=device)
        assert agent.device == torch.device("cpu")
        # The device path: one packed block per batch, moved with to_device; same numbers.
        assert _updates(agent, buffer, agent.device) == expected
        for a, b in zip(agent.critic.parameters(), default.critic.parameters()):
            assert torch.equal(a, b)
        obs = rng.normal(size=(4, 3)).astype(np.float32)
        np.testing.assert_array_equal(agent.act(obs, deterministic=True), default.act(obs, deterministic=True))


def test_bfloat16_on_an_explicit_device_gives_finite_losses(rng: np.random.Generator) -> None:
    agent = SAC(3, 2, SACConfig(hidden_sizes=(32, 32), batch_size=64, matmul_dtype="bfloat16"), seed=0, device="cpu")
    losses = _updates(agent, _small_buffer(rng), agent.device, steps=4)
    assert all(np.isfinite(v) for metrics in losses for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in agent.critic.parameters())  # float32 master weights


def test_state_saved_on_another_device_loads_with_map_location(rng: np.random.Generator) -> None:
    config = SACConfig(hidden_sizes=(32, 32), batch_size=64)
    buffer = _small_buffer(rng)
    agent = SAC(3, 2, config, seed=1, device="cpu")
    _updates(agent, buffer, agent.device, steps=3)
    blob = io.BytesIO()
    torch.save(agent.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, map_location="cpu", weights_only=True)
    restored = SAC(3, 2, config, seed=9, device="auto")
    restored.load_state_dict(state)
    obs = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(restored.act(obs), agent.act(obs))
    # A CUDA generator's state (16 bytes) does not fit a CPU generator: the agent loads all the
    # same and continues its noise from a seed derived from that state, the same every time.
    state["generator"] = torch.arange(16, dtype=torch.uint8)
    actions = []
    for _ in range(2):
        other = SAC(3, 2, config, seed=9, device="cpu")
        other.load_state_dict(state)
        for a, b in zip(other.actor.parameters(), agent.actor.parameters()):
            assert torch.equal(a, b)
        actions.append(other.act(obs))
    np.testing.assert_array_equal(actions[0], actions[1])


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine where torch sees no GPU")
def test_asking_for_a_gpu_that_is_not_there_is_one_clear_error() -> None:
    from rlvlmf.errors import UserError

    with pytest.raises(UserError, match="sees no CUDA GPU.*device=cpu"):
        SAC(3, 2, SACConfig(hidden_sizes=(8,)), device="cuda:0")
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        SAC(3, 2, SACConfig(hidden_sizes=(8,)), device="gpu")
