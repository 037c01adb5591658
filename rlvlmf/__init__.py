"""rlvlmf: reinforcement learning from vision-language-model feedback.

The main entry points, importable from the top level (loaded on first use, so
``import rlvlmf`` stays cheap)::

    from rlvlmf import make_env, make_backend, Labeler, QueryStore, build_config, run_training

    env = make_env("drawer-open")                      # Gymnasium env with the task's goal text
    backend = make_backend("openai:gpt-4o")            # any backend spec from `rlvlmf backends`
    config = build_config("cartpole-swingup", ["num_interact=2000"])
    run_training(config, "runs/demo")

    reward = load_reward_model("reward_models/demo.pt")  # reward(frames=(N, H, W, 3) uint8) -> (N,)
    env = LearnedReward(gymnasium.make("Pendulum-v1", render_mode="rgb_array"), reward)  # for any RL library
    policy = load_agent("runs/demo")                   # policy(obs) -> action; policy.make_env()

A preference backend in another package subclasses ``rlvlmf.Backend`` (answers are
``rlvlmf.Answer`` with a ``rlvlmf.Label``, for ``rlvlmf.FramePair``s) and registers under the
``rlvlmf.backends`` entry-point group.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "rlvlmf.envs": ("make_env", "PRESETS", "TaskDescription"),
    "rlvlmf.feedback.registry": ("make_backend",),
    # The plug-in interface: a backend in another package subclasses Backend and returns Answers.
    "rlvlmf.feedback.base": ("Backend", "Answer", "FramePair", "Label"),
    "rlvlmf.feedback.labeler": ("Labeler", "LabelerConfig"),
    "rlvlmf.feedback.store": ("QueryStore",),
    "rlvlmf.reward.ensemble": ("RewardEnsemble",),
    "rlvlmf.reward.model": ("load_reward_model", "RewardModel"),
    "rlvlmf.reward.learned_reward": ("LearnedReward",),
    "rlvlmf.agents.sac": ("SAC",),
    "rlvlmf.training.config": ("TrainConfig",),
    "rlvlmf.training.builder": ("build_config",),
    "rlvlmf.training.loop": ("run_training",),
    "rlvlmf.training.trained_agent": ("load_agent", "TrainedPolicy"),
}
"""The top-level names, under the module that defines them (each module named once)."""

_LAZY: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlvlmf' has no attribute {name!r}")
