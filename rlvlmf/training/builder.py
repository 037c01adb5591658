"""Build a run's config from a preset and overrides, save and read it, and name run folders."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rlvlmf.config import apply_overrides, from_dict, to_dict
from rlvlmf.envs import make_env
from rlvlmf.envs.custom import box_spaces, check_trainable
from rlvlmf.errors import UserError
from rlvlmf.reward.config import with_fields_saved_state_lacks
from rlvlmf.training.config import ClipMode, TrainConfig, default_config, parse_reward, read_reward
from rlvlmf.training.run_files import RunFiles
from rlvlmf.utils.atomic import atomic_write_text


def save_config(config: TrainConfig, run_dir: Path) -> None:
    """Write the resolved config as ``config.json`` (no secrets: keys live in the environment)."""
    atomic_write_text(RunFiles(run_dir).config, json.dumps(to_dict(config), indent=2))


def load_config(run_dir: Path) -> TrainConfig:
    """The config a run was started with, from its ``config.json`` (see ``read_config``).

    Raises:
        UserError: The folder has no ``config.json``.
    """
    path = RunFiles(run_dir).config
    if not path.exists():
        raise UserError(f"{run_dir} is not a run folder (no config.json); start it without --resume")
    return read_config(path, saved_by_a_run=True)


def read_config(path: Path, *, saved_by_a_run: bool = False) -> TrainConfig:
    """A config saved by ``save_config`` (or edited from one), validated field by field.

    Folders written before reward modes were typed hold the ``--reward`` text (``"clip"``,
    ``"code:FILE"``); it is read the way the flag is. ``saved_by_a_run``: the file is a run's own
    ``config.json`` (a resume), whose missing fields mean "saved before they existed"
    (``rlvlmf.reward.config.FIELDS_SAVED_STATE_LACKS``), not "use the default".

    Raises:
        UserError: The file is missing or not JSON.
        ConfigError: A field is unknown or has a bad value.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not a JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON config (expected an object of fields)")
    if saved_by_a_run and isinstance(data.get("reward_model"), dict):
        # Fields added since the run started keep the behaviour it started with, so a resume continues it.
        data["reward_model"] = with_fields_saved_state_lacks(data["reward_model"])
    if "reward" in data:
        data["reward"] = read_reward(data["reward"], str(data.get("backend", TrainConfig.backend)))
    return from_dict(TrainConfig, data)


def reward_state_dim(state_kind: str, obs_dim: int, action_dim: int) -> int:
    """Length of the reward model's state vector: PEBBLE's r(s, a) reads both, the others one."""
    return obs_dim + action_dim if state_kind == "obs_action" else obs_dim


def build_config(preset: str = "", overrides: list[str] | tuple[str, ...] = (), **fields: Any) -> TrainConfig:
    """The preset's default config with top-level ``fields`` and ``key=value`` overrides applied.

    Without a preset, ``fields`` name the env: ``env="dmc:hopper-hop", goal="to hop forward"``
    (optional ``camera``); the schedule is the family's (``FAMILY_SCHEDULES``) and the env is
    built once here, so one that cannot train fails before anything is written. The reward
    model's state size is derived from the env (observation plus action for PEBBLE's r(s, a)),
    so ``--set reward_model.input=state`` needs nothing else. A ``reward`` field may be the
    ``--reward`` flag's text (``"env"``, ``"code:FILE"``), read by ``parse_reward``.

    Raises:
        UserError: Unknown preset or spec, empty goal, or an env without Box spaces or
            ``rgb_array`` frames.
    """
    if isinstance(fields.get("reward"), str):  # the --reward flag's text
        fields["reward"] = parse_reward(fields["reward"], fields.get("backend", TrainConfig.backend))
    env_fields = {key: fields.pop(key) for key in ("env", "goal", "camera") if key in fields}
    config = default_config(preset, **env_fields)
    env = make_env(config.env_preset)
    try:
        if not config.preset:  # presets are known to train
            check_trainable(env, config.env)
        obs_space, action_space = box_spaces(env)
        obs_dim, action_dim = int(np.prod(obs_space.shape)), int(np.prod(action_space.shape))
    finally:
        env.close()
    state_dim = reward_state_dim(config.reward_model.state_kind, obs_dim, action_dim)
    config = dataclasses.replace(config, reward_model=dataclasses.replace(config.reward_model, state_dim=state_dim))
    if fields:
        config = dataclasses.replace(config, **fields)
    config = apply_overrides(config, overrides)
    state_dim = reward_state_dim(config.reward_model.state_kind, obs_dim, action_dim)
    return dataclasses.replace(config, reward_model=dataclasses.replace(config.reward_model, state_dim=state_dim))


# ---------------------------------------------------------------- run names
# Both ways a run folder is named live here: ``rlvlmf train``'s default and a sweep's. Their
# character rules differ and stay so: changing either would rename existing runs, and a
# resumed sweep would no longer find them.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str) -> str:
    """``text`` made safe as one path component (runs of other characters become ``-``)."""
    return _UNSAFE.sub("-", text).strip("-.")


def sweep_run_name(method: str, task: str, seed: int) -> str:
    """A sweep's run folder name, ``METHOD__TASK__sSEED`` (each part made path-safe)."""
    return f"{slug(method)}__{slug(task)}__s{seed}"


def default_run_name(config: TrainConfig) -> str:
    """``<preset or env id>-<reward>-<backend>-s<seed>``, made safe for a folder name."""
    if isinstance(config.reward, ClipMode):
        backend = f"clip:{config.reward.model}"
    else:
        backend = config.backend if config.learns_reward else ""
    raw = "-".join(part for part in (config.task_name, config.reward.kind, backend.split("@")[0], f"s{config.seed}") if part)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in raw)
