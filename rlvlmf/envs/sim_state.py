"""Save the simulator state behind a frame, and draw that frame again later.

A training run keeps only small frames; the VLM wants large ones of steps chosen long after
they happened. Saving each step's simulator state (tens of floats) and re-rendering the chosen
steps at query time costs far less than keeping every large frame.

A state has two parts: the *step state*, which changes every step (MuJoCo: ``qpos``, ``qvel``,
``act``, mocap poses; classic control: ``env.state``), and the *episode state*, which a reset
may change but a step does not (MuJoCo: body, geom and site placements of the model, e.g. a
MetaWorld drawer or a reacher target placed at reset). Save the episode state once per episode.

Families: dm_control (``DMCEnv``), MuJoCo-based Gymnasium envs, MetaWorld, and Gymnasium's
classic-control envs (Pendulum's last torque too, which its frames draw). Anything else
(Box2D, custom envs) cannot be restored: ``can_restore`` says so, and callers fall back to
keeping frames. Restoring writes into the env; use a second instance (e.g. an evaluation env)
rather than one that is mid-episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

_CLASSIC_CONTROL = "gymnasium.envs.classic_control"


def _mujoco(env: gym.Env) -> tuple[Any, Any] | None:
    """``(MjModel, MjData)`` of a MuJoCo-based env, or ``None``."""
    inner = env.unwrapped
    physics = getattr(getattr(inner, "_env", None), "physics", None)  # dm_control behind DMCEnv
    if physics is not None:
        return physics.model.ptr, physics.data.ptr
    model, data = getattr(inner, "model", None), getattr(inner, "data", None)
    if model is not None and data is not None and type(model).__name__ == "MjModel":
        return model, data
    return None


def _classic(env: gym.Env) -> Any | None:
    inner = env.unwrapped
    # ``state`` is set by the first reset (Pendulum has no such attribute before it).
    if type(inner).__module__.startswith(_CLASSIC_CONTROL):
        return inner
    return None


def can_restore(env: gym.Env) -> bool:
    """Whether ``step_state``/``restore`` work for this env (after its first ``reset``)."""
    return _mujoco(env) is not None or _classic(env) is not None


def step_state(env: gym.Env) -> np.ndarray:
    """The part of the state that steps change, as a flat float64 vector.

    Raises:
        TypeError: The env cannot be restored (``can_restore`` is False).
    """
    mj = _mujoco(env)
    if mj is not None:
        _, data = mj
        parts = [data.qpos, data.qvel, data.act, data.mocap_pos.ravel(), data.mocap_quat.ravel()]
        return np.concatenate(parts).astype(np.float64)
    inner = _classic(env)
    if inner is not None:
        state = np.asarray(inner.state, np.float64).ravel()
        if hasattr(inner, "last_u"):  # Pendulum draws the last torque as an arrow
            state = np.append(state, np.nan if inner.last_u is None else float(np.asarray(inner.last_u).ravel()[0]))
        return state
    raise TypeError(f"{type(env.unwrapped).__name__} cannot save its simulator state")


def episode_state(env: gym.Env) -> np.ndarray:
    """The part of the state a reset may change and a step does not (empty if none)."""
    mj = _mujoco(env)
    if mj is not None:
        model, _ = mj
        return np.concatenate([model.body_pos.ravel(), model.body_quat.ravel(), model.geom_pos.ravel(),
                               model.geom_quat.ravel(), model.site_pos.ravel()]).astype(np.float64)
    if _classic(env) is not None:
        return np.zeros(0, np.float64)
    raise TypeError(f"{type(env.unwrapped).__name__} cannot save its simulator state")


def restore(env: gym.Env, episode: np.ndarray, step: np.ndarray) -> None:
    """Put ``env`` into a saved state, so that ``env.render()`` draws that step's frame.

    Args:
        env: An env of the same kind as the one the state came from (same preset).
        episode: ``episode_state`` of the step's episode.
        step: ``step_state`` right after the step.
    """
    mj = _mujoco(env)
    if mj is not None:
        import mujoco

        model, data = mj
        parts = [model.body_pos, model.body_quat, model.geom_pos, model.geom_quat, model.site_pos]
        _unpack(episode, parts)
        _unpack(step, [data.qpos, data.qvel, data.act, data.mocap_pos, data.mocap_quat])
        mujoco.mj_forward(model, data)  # positions of bodies, cameras and lights from qpos
        return
    inner = _classic(env)
    if inner is None:
        raise TypeError(f"{type(env.unwrapped).__name__} cannot restore a simulator state")
    if hasattr(inner, "last_u"):
        step, last_u = step[:-1], step[-1]
        inner.last_u = None if np.isnan(last_u) else float(last_u)
    inner.state = np.array(step, np.float64).reshape(np.shape(inner.state))


def _unpack(flat: np.ndarray, targets: list[np.ndarray]) -> None:
    sizes = [t.size for t in targets]
    if flat.size != sum(sizes):
        raise ValueError(f"saved state has {flat.size} numbers; this env's has {sum(sizes)} (a different env?)")
    for target, part in zip(targets, np.split(np.asarray(flat, np.float64), np.cumsum(sizes)[:-1])):
        target[...] = part.reshape(target.shape)
