"""Episodes to verify generated code against: rollouts, scripted policies, saved files.

Successful episodes come, in order of preference, from a file (``--success-trajs``: a scripted
policy's or a checkpoint's rollouts), from the family's scripted expert (MetaWorld ships one per
task), or from random-policy rollouts that the env itself marks successful
(``info["success"]``). The last only works on tasks a random policy sometimes solves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlvlmf.errors import ConfigError, MissingDependencyError, UserError

Policy = Callable[[np.ndarray], np.ndarray]
"""Maps one observation ``(obs_dim,)`` to one action."""


@dataclass
class Episode:
    """Observations of one episode and where it first succeeded.

    Attributes:
        obs: ``(T, obs_dim)`` float64 observations, the reset observation first.
        success_step: Index into ``obs`` of the first observation after which the env reported
            success, or ``None``.
        start_frame: Rendered frame at reset (when rendering was asked for).
        success_frame: Rendered frame at ``success_step`` (when rendering was asked for).
    """

    obs: np.ndarray
    success_step: int | None = None
    start_frame: np.ndarray | None = None
    success_frame: np.ndarray | None = None


def random_policy(env: gym.Env) -> Policy:
    """Uniformly random actions from the env's (seeded) action space."""
    return lambda obs: env.action_space.sample()


def rollout(env: gym.Env, policy: Policy, seed: int, max_steps: int | None = None, render: bool = False) -> Episode:
    """Run one episode; render only its first frame and its first success frame.

    Args:
        env: A Gymnasium env; ``info["success"]`` is read when present.
        policy: Chooses actions.
        seed: Reset seed.
        max_steps: Stop after this many steps (the env's own limit applies too).
        render: Keep the start and first-success frames.
    """
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations = [np.asarray(obs, dtype=np.float64)]
    start = np.asarray(env.render()) if render else None
    success_step: int | None = None
    success_frame = None
    step = 0
    while max_steps is None or step < max_steps:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        step += 1
        observations.append(np.asarray(obs, dtype=np.float64))
        if success_step is None and info.get("success"):
            success_step = step
            success_frame = np.asarray(env.render()) if render else None
        if terminated or truncated:
            break
    return Episode(np.stack(observations), success_step, start, success_frame)


def collect(
    env: gym.Env, policy: Policy, n: int, rng: np.random.Generator, max_steps: int | None = None, render: bool = False
) -> list[Episode]:
    """``n`` episodes with reset seeds drawn from ``rng``."""
    return [rollout(env, policy, int(rng.integers(2**31 - 1)), max_steps, render) for _ in range(n)]


def metaworld_expert(task_name: str) -> Policy:
    """MetaWorld's scripted policy for a task (``"drawer-open"`` -> ``SawyerDrawerOpenV3Policy``).

    Raises:
        UnknownNameError-like UserError: MetaWorld has no scripted policy of that name.
    """
    try:
        import metaworld.policies as policies  # noqa: PLC0415 - optional family
    except ImportError as exc:
        raise MissingDependencyError("MetaWorld is not installed: pip install metaworld") from exc
    short = task_name.removesuffix("-v3")
    class_name = "Sawyer" + "".join(word.capitalize() for word in short.split("-")) + "V3Policy"
    cls = getattr(policies, class_name, None)
    if cls is None:
        raise UserError(f"MetaWorld has no scripted policy {class_name} for {task_name!r}; give --success-trajs FILE.npz")
    expert = cls()
    return lambda obs: np.clip(expert.get_action(obs), -1.0, 1.0)


def load_trajectories(path: str | Path) -> list[np.ndarray]:
    """Episodes from an ``.npz``: each 2-D array ``(T, obs_dim)`` is one episode, each 3-D
    array ``(E, T, obs_dim)`` is ``E`` episodes. Arrays are read in sorted name order.

    Raises:
        UserError: Missing file, no usable arrays, or differing ``obs_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no trajectory file {path}")
    episodes: list[np.ndarray] = []
    with np.load(path, allow_pickle=False) as data:
        for name in sorted(data.files):
            array = np.asarray(data[name], dtype=np.float64)
            if array.ndim == 2:
                episodes.append(array)
            elif array.ndim == 3:
                episodes.extend(array)
    if not episodes:
        raise UserError(f"{path}: no (T, obs_dim) or (E, T, obs_dim) arrays found")
    if len({e.shape[1] for e in episodes}) != 1:
        raise ConfigError(f"{path}: episodes have different obs_dim")
    return episodes
