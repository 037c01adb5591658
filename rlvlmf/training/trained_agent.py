"""A finished (or interrupted) run's policy, as a function of observations.

``load_agent("runs/cartpole-swingup-preference-scripted-s0")`` reads the run's config and the
actor of its latest checkpoint (or a named one), nothing else: no replay buffer, no env. The
run's own env comes from ``policy.make_env()``::

    policy = load_agent(run_dir)
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(policy(obs))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlvlmf.agents.sac import SAC
from rlvlmf.config import from_dict
from rlvlmf.envs import make_env
from rlvlmf.errors import UserError
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.config import TrainConfig
from rlvlmf.training.run_files import RunFiles


@dataclass
class TrainedPolicy:
    """The deterministic policy of a run's checkpoint (SAC's squashed mean action).

    Attributes:
        config: The run's saved config.
        agent: The SAC agent with the checkpoint's weights.
        run_dir: The run folder.
        checkpoint: Name of the checkpoint the weights come from.
    """

    config: TrainConfig
    agent: SAC
    run_dir: Path
    checkpoint: str

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Action(s) for one observation ``(obs_dim,)`` or a batch ``(N, obs_dim)``.

        Returns:
            float32 action(s) in ``[-1, 1]``, ``(A,)`` or ``(N, A)``, as the run's agent acted
            in evaluation.
        """
        return self.agent.act(obs, deterministic=True)

    def make_env(self) -> gym.Env:
        """A fresh env as the run trained and evaluated in (same preset or env, goal, frames)."""
        return make_env(self.config.env_preset)


def _dims(actor_state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(obs_dim, action_dim)`` from the actor's weights: input width and half the output
    (mean and log-std), so no env has to be built to size the agent."""
    weights = [value for key, value in actor_state.items() if key.endswith("weight")]
    return int(weights[0].shape[1]), int(weights[-1].shape[0]) // 2


def load_agent(run_dir: str | Path, checkpoint: str | None = None) -> TrainedPolicy:
    """Load a run's policy from its latest (or the named) checkpoint.

    Args:
        run_dir: A run folder written by ``rlvlmf train``.
        checkpoint: A checkpoint folder name (``step_000020000``), ``None`` for the latest;
            a finished run's latest is its last step.

    Returns:
        A ``TrainedPolicy``: ``policy(obs) -> action``; ``policy.make_env()`` builds the env.

    Raises:
        UserError: Not a run folder, no such checkpoint, or a damaged one.
    """
    files = RunFiles(Path(run_dir))
    if not files.is_run():
        raise UserError(f"{run_dir} is not a run folder (no {files.config.name}); give a folder `rlvlmf train` wrote")
    config = from_dict(TrainConfig, json.loads(files.config.read_text()))
    name, state = CheckpointManager(files.checkpoints).load_torch_state(checkpoint)
    obs_dim, action_dim = _dims(state["agent"]["actor"])
    agent = SAC(obs_dim, action_dim, config.sac, seed=config.seed)
    agent.load_state_dict(state["agent"])
    return TrainedPolicy(config=config, agent=agent, run_dir=Path(run_dir), checkpoint=name)
