"""Any env as a run's task: a family spec plus a goal sentence, without a named preset.

``custom_preset("dmc:hopper-hop", "to make the robot hop forward")`` builds the same
``Preset`` a named one is, with the family's default frame sizes and no crop, so everything
downstream (``make_env``, the labeler, the reward model) treats both alike.
``check_trainable`` refuses, in one line, an env that training cannot use.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlvlmf.envs.presets import Preset
from rlvlmf.envs.registry import DEFAULT_RENDER_SIZE, split_spec
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UserError

# (render side, VLM frame side) per family when no preset gives them. MetaWorld as in its
# presets (480 px, 300 px VLM frames, the paper's), without a crop since none is known for an
# arbitrary task.
_FAMILY_FRAMES: dict[str, tuple[int, int]] = {"metaworld": (480, 300)}


def parse_camera(camera: str | int | None) -> str | int | None:
    """``"2"`` -> ``2`` (a camera id), ``""`` -> ``None`` (the family's default), names as given."""
    if camera is None or isinstance(camera, int):
        return camera
    text = camera.strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def custom_preset(spec: str, goal: str, camera: str | int | None = None) -> Preset:
    """A preset for any family spec and goal sentence.

    Args:
        spec: ``dmc:<domain>-<task>``, ``gym:<id>``, ``gym:<module>:<id>`` (a user's env that
            ``module`` registers on import) or ``metaworld:<task>``.
        goal: What the VLM is told the task is, phrased to follow "The goal is ...":
            ``"to open the drawer"``.
        camera: Camera name or id (``None``: the family's default view).

    Returns:
        A ``Preset`` named after the env id; its CLIP phrase is the goal sentence.

    Raises:
        ConfigError: Empty goal, or a preset name where a family spec belongs.
        UnknownNameError: Unknown family prefix.
    """
    if ":" not in spec:
        raise ConfigError(f"--env wants a family spec such as dmc:hopper-hop or gym:Pendulum-v1; "
                          f"{spec!r} looks like a preset name, so use --preset {spec}")
    family, name = split_spec(spec)
    if not goal or not goal.strip():
        raise ConfigError(f"the goal sentence for {spec} is empty; say what the agent should do, "
                          "e.g. --goal \"to move the arm tip onto the target\"")
    goal = goal.strip()
    short_name = name.rpartition(":")[2]  # gym:<module>:<id> -> <id>
    phrase = goal[3:] if goal.lower().startswith("to ") else goal
    task = TaskDescription(name=short_name, goal=goal, positive_phrases=(phrase,))
    render, vlm = _FAMILY_FRAMES.get(family, (DEFAULT_RENDER_SIZE, DEFAULT_RENDER_SIZE))
    return Preset(name=short_name, spec=spec, task=task, camera=parse_camera(camera), width=render, height=render,
                  vlm_frame_size=vlm)


def check_trainable(env: gym.Env, what: str) -> None:
    """Refuse, in one line, an env that RL-VLM-F training cannot use.

    Training needs a flat Box observation (SAC's input), a Box action space (SAC's output)
    and ``rgb_array`` frames (what the VLM compares). The env is reset and renders once.

    Args:
        env: The env as ``make_env`` built it.
        what: How to name it in the message (its spec).

    Raises:
        UserError: One of the three is missing.
    """
    if not isinstance(env.action_space, gym.spaces.Box):
        raise UserError(f"{what} has a {type(env.action_space).__name__} action space; training (SAC) "
                        "needs a continuous Box action space")
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise UserError(f"{what} has a {type(env.observation_space).__name__} observation space; training "
                        "needs a Box (flatten Dict observations with gymnasium.wrappers.FlattenObservation)")
    modes = list(env.unwrapped.metadata.get("render_modes", []))
    if "rgb_array" not in modes or getattr(env.unwrapped, "render_mode", None) != "rgb_array":
        raise UserError(f"{what} cannot render rgb_array frames (its render modes: {modes}); "
                        "the VLM needs images of the env")
    env.reset(seed=0)
    frame: Any
    try:
        frame = env.render()
    except Exception as exc:  # any failure of a third-party render() means no frames
        raise UserError(f"{what} failed to render an rgb_array frame: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        shape = getattr(frame, "shape", None)
        raise UserError(f"{what} renders {type(frame).__name__} of shape {shape}; rgb_array frames must be "
                        "HxWx3 uint8 arrays")


def box_spaces(env: gym.Env) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The observation and action spaces of an env that trains, as the Boxes they are.

    Presets have Box spaces and ``check_trainable`` refuses any other env before a run
    starts, so here a non-Box space is a bug, not bad input.

    Returns:
        ``(observation_space, action_space)``.
    """
    obs_space, action_space = env.observation_space, env.action_space
    assert isinstance(obs_space, gym.spaces.Box) and isinstance(action_space, gym.spaces.Box), "check_trainable first"
    return obs_space, action_space
