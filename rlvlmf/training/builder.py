"""Build a run's config from a preset and overrides, and name its folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from rlvlmf.config import apply_overrides, to_dict
from rlvlmf.envs import make_env
from rlvlmf.training.config import TrainConfig, default_config
from rlvlmf.training.run_files import RunFiles
from rlvlmf.utils.atomic import atomic_write_text


def save_config(config: TrainConfig, run_dir: Path) -> None:
    """Write the resolved config as ``config.json`` (no secrets: keys live in the environment)."""
    atomic_write_text(RunFiles(run_dir).config, json.dumps(to_dict(config), indent=2))


def reward_state_dim(state_kind: str, obs_dim: int, action_dim: int) -> int:
    """Length of the reward model's state vector: PEBBLE's r(s, a) reads both, the others one."""
    return obs_dim + action_dim if state_kind == "obs_action" else obs_dim


def build_config(preset: str, overrides: list[str] | tuple[str, ...] = (), **fields: Any) -> TrainConfig:
    """The preset's default config with top-level ``fields`` and ``key=value`` overrides applied.

    The reward model's state size is derived from the env (observation plus action for
    PEBBLE's r(s, a)), so ``--set reward_model.input=state`` needs nothing else.
    """
    config = default_config(preset)
    env = make_env(config.preset)
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        action_dim = int(np.prod(env.action_space.shape))
    finally:
        env.close()
    state_dim = reward_state_dim(config.reward_model.state_kind, obs_dim, action_dim)
    config = dataclasses.replace(config, reward_model=dataclasses.replace(config.reward_model, state_dim=state_dim))
    if fields:
        config = dataclasses.replace(config, **fields)
    config = apply_overrides(config, overrides)
    state_dim = reward_state_dim(config.reward_model.state_kind, obs_dim, action_dim)
    return dataclasses.replace(config, reward_model=dataclasses.replace(config.reward_model, state_dim=state_dim))


def default_run_name(config: TrainConfig) -> str:
    """``<preset>-<reward>-<backend>-s<seed>``, made safe for a folder name."""
    backend = config.backend if config.reward in ("preference", "clip") else ""
    raw = "-".join(part for part in (config.preset, config.reward.split(":")[0], backend.split("@")[0], f"s{config.seed}") if part)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in raw)
