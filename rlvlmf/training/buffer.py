"""The replay buffer: preallocated numpy arrays, one slot per transition, wrapping around.

Each transition keeps its ground-truth env reward and a learned reward that
``relabel`` recomputes for every filled slot (wrapped or not) after each reward fit.
Frames are kept once per transition, as uint8 at the reward model's resolution: the
frame rendered after the step, i.e. of ``next_obs``, which is what the reward scores.

Memory per transition (see ``bytes_per_transition``): 4 * (2 * obs_dim + action_dim)
+ 4 (env reward) + 4 (learned reward) + 1 (terminated) + 1 (episode end) + 8 (episode
id) + 4 (step) + 3 * frame_size**2 (frames, when kept). For 39-dim MetaWorld states,
4-dim actions and 64x64 frames that is 12,638 bytes, 12.6 GB per million steps (frames
are 97% of it); without frames it is 350 bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rlvlmf.agents.batch import TransitionBatch
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.reward.config import StateKind
from rlvlmf.reward.inputs import RewardInputs, state_features
from rlvlmf.utils.atomic import atomic_open
from rlvlmf.utils.device import to_device

_FORMAT_VERSION = 1
_SCALAR_BYTES = 4 + 4 + 1 + 1 + 8 + 4  # env reward, learned reward, terminated, episode end, episode id, step


def bytes_per_transition(obs_dim: int, action_dim: int, frame_size: int | None) -> int:
    """Bytes one transition takes in a ``ReplayBuffer`` with these sizes.

    Args:
        obs_dim: Length of the observation vector.
        action_dim: Length of the action vector.
        frame_size: Side of the stored square frames, or ``None`` when no frames are kept.

    Returns:
        Bytes per slot (float32 obs, next obs and action; uint8 frames).
    """
    frame_bytes = 0 if frame_size is None else 3 * frame_size * frame_size
    return 4 * (2 * obs_dim + action_dim) + _SCALAR_BYTES + frame_bytes


class ReplayBuffer:
    """A fixed-capacity ring of transitions, with frames for the reward model if asked."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, frame_size: int | None = None) -> None:
        """Preallocate every array (memory: ``capacity * bytes_per_transition(...)``).

        Args:
            capacity: Transitions kept; the oldest are overwritten beyond it.
            obs_dim: Length of the observation vector.
            action_dim: Length of the action vector.
            frame_size: Side of the uint8 frames kept per transition, or ``None`` for none.
        """
        if capacity < 1 or obs_dim < 1 or action_dim < 1:
            raise ConfigError(f"replay buffer needs capacity, obs_dim, action_dim >= 1, got {capacity}, {obs_dim}, {action_dim}")
        if frame_size is not None and frame_size < 1:
            raise ConfigError(f"replay buffer frame_size must be >= 1 or None, got {frame_size}")
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.frame_size = frame_size
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.env_reward = np.zeros(capacity, np.float32)
        self.learned_reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.episode_end = np.zeros(capacity, bool)
        self.episode = np.zeros(capacity, np.int64)
        self.step = np.zeros(capacity, np.int32)
        self.frames = None if frame_size is None else np.zeros((capacity, frame_size, frame_size, 3), np.uint8)
        self.total_added = 0
        """Transitions ever added (the next one's position in the stream)."""
        self._episode = 0
        self._step = 0
        # (stream position of the first step, length) of finished episodes still in the buffer.
        self._finished: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        return min(self.total_added, self.capacity)

    @property
    def observations(self) -> np.ndarray:
        """``(len(self), obs_dim)`` observations of the stored transitions, row ``i`` = slot ``i`` (a view)."""
        return self.obs[: len(self)]

    # ------------------------------------------------------------------ writing
    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        env_reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        frame: np.ndarray | None = None,
    ) -> int:
        """Store one transition.

        Args:
            obs: ``(obs_dim,)`` observation before the step.
            action: ``(action_dim,)`` action taken.
            env_reward: The env's (ground-truth) reward.
            next_obs: ``(obs_dim,)`` observation after the step.
            terminated: The episode ended in a terminal state (no bootstrapping).
            truncated: The episode was cut by a time limit (still bootstraps).
            frame: ``(S, S, 3)`` uint8 frame of ``next_obs`` at the reward resolution; required
                when the buffer keeps frames.

        Returns:
            The slot written.
        """
        slot = self.total_added % self.capacity
        self.obs[slot] = obs
        self.next_obs[slot] = next_obs
        self.action[slot] = action
        self.env_reward[slot] = env_reward
        self.learned_reward[slot] = 0.0
        self.terminated[slot] = terminated
        self.episode_end[slot] = terminated or truncated
        self.episode[slot] = self._episode
        self.step[slot] = self._step
        if self.frames is not None:
            if frame is None or frame.shape != self.frames.shape[1:] or frame.dtype != np.uint8:
                got = None if frame is None else (frame.shape, frame.dtype)
                raise ValueError(f"this buffer keeps {self.frames.shape[1:]} uint8 frames; got {got}")
            self.frames[slot] = frame
        self.total_added += 1
        self._step += 1
        if terminated or truncated:
            self._finished.append((self.total_added - self._step, self._step))
            self._episode += 1
            self._step = 0
        oldest = self.total_added - self.capacity
        while self._finished and self._finished[0][0] < oldest:  # its first step was overwritten
            self._finished.popleft()
        return slot

    # ------------------------------------------------------------------ reading
    def open_episode_slots(self) -> np.ndarray:
        """Slots of the episode in progress (begun, not ended), oldest first."""
        return (self.total_added - self._step + np.arange(self._step)) % self.capacity

    def recent_episodes(self, count: int) -> list[np.ndarray]:
        """Slots of the last ``count`` finished episodes still fully in the buffer.

        Args:
            count: Most episodes to return.

        Returns:
            Oldest first; each a ``(length,)`` int64 array of slots in time order (an episode
            may wrap around the end of the buffer).
        """
        chosen = list(self._finished)[-count:] if count > 0 else []
        return [(start + np.arange(length)) % self.capacity for start, length in chosen]

    def reward_inputs(self, slots: np.ndarray, state_kind: StateKind | None) -> RewardInputs:
        """What a reward model reads for these slots.

        Args:
            slots: Int array of any shape, e.g. ``(N,)`` steps or ``(N, T)`` segments.
            state_kind: Which fields form the state vector, or ``None`` for no states.

        Returns:
            Frames ``(*slots.shape, S, S, 3)`` (if kept) and states ``(*slots.shape, D)``.
        """
        frames = None if self.frames is None else self.frames[slots]
        states = None
        if state_kind is not None:
            states = state_features(state_kind, self.obs[slots], self.action[slots], self.next_obs[slots])
        return RewardInputs(frames, states)

    def relabel(
        self, reward_fn: Callable[[RewardInputs], np.ndarray], state_kind: StateKind | None, batch_size: int = 8192
    ) -> None:
        """Recompute the learned reward of every filled slot, also after wrapping.

        Args:
            reward_fn: Maps ``RewardInputs`` of ``(n, ...)`` steps to ``(n,)`` rewards, e.g.
                ``RewardEnsemble.predict``.
            state_kind: Which fields form the state vector (``None`` for image-only rewards).
            batch_size: Slots per call of ``reward_fn``.
        """
        filled = len(self)
        for start in range(0, filled, batch_size):
            part = slice(start, min(start + batch_size, filled))  # slices are views: frames are not copied
            frames = None if self.frames is None else self.frames[part]
            states = None
            if state_kind is not None:
                states = state_features(state_kind, self.obs[part], self.action[part], self.next_obs[part])
            self.learned_reward[part] = reward_fn(RewardInputs(frames, states))

    def sample_slots(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``(batch_size,)`` filled slots drawn uniformly with replacement."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return rng.integers(0, len(self), size=batch_size)

    def sample(self, batch_size: int, rng: np.random.Generator, reward: Literal["learned", "env"] = "learned",
               device: torch.device | None = None) -> TransitionBatch:
        """A uniform minibatch for SAC.

        Args:
            batch_size: Transitions drawn (with replacement).
            rng: Draws the slots.
            reward: ``"learned"`` (the relabelled reward) or ``"env"`` (ground truth).
            device: Where the tensors should be (see ``batch``).

        Returns:
            A ``TransitionBatch`` of float32 tensors.
        """
        return self.batch(self.sample_slots(batch_size, rng), reward, device)

    def batch(self, slots: np.ndarray, reward: Literal["learned", "env"] = "learned",
              device: torch.device | None = None) -> TransitionBatch:
        """The transitions at ``slots`` (e.g. from ``sample_slots``) as a ``TransitionBatch``.

        Args:
            slots: ``(B,)`` slots.
            reward: ``"learned"`` or ``"env"``.
            device: ``None``: CPU tensors viewing fresh numpy arrays. A device: the batch is
                gathered into one float32 block and moved there in one copy (through pinned
                memory on a GPU), then split into views; the values are the same.
        """
        rewards = self.learned_reward if reward == "learned" else self.env_reward
        if device is not None:
            return self._packed_batch(slots, rewards, device)
        return TransitionBatch(
            torch.from_numpy(self.obs[slots]),
            torch.from_numpy(self.action[slots]),
            torch.from_numpy(rewards[slots]).unsqueeze(1),
            torch.from_numpy(self.next_obs[slots]),
            torch.from_numpy(1.0 - self.terminated[slots].astype(np.float32)).unsqueeze(1),
        )

    def _packed_batch(self, slots: np.ndarray, rewards: np.ndarray, device: torch.device) -> TransitionBatch:
        o, a = self.obs_dim, self.action_dim
        block = np.empty((len(slots), 2 * o + a + 2), np.float32)
        np.take(self.obs, slots, axis=0, out=block[:, :o])
        np.take(self.action, slots, axis=0, out=block[:, o:o + a])
        block[:, o + a] = rewards[slots]
        np.take(self.next_obs, slots, axis=0, out=block[:, o + a + 1:2 * o + a + 1])
        block[:, -1] = 1.0 - self.terminated[slots].astype(np.float32)
        moved = to_device(torch.from_numpy(block), device)
        obs, action, reward, next_obs, not_done = moved.split([o, a, 1, o, 1], dim=1)
        return TransitionBatch(obs, action, reward, next_obs, not_done)

    # ------------------------------------------------------------------ persistence
    _ARRAYS = (
        "obs", "next_obs", "action", "env_reward", "learned_reward", "terminated", "episode_end", "episode", "step", "frames",
    )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array (filled part only) and counter, as numpy arrays for ``np.savez``."""
        filled = len(self)
        state = {name: getattr(self, name)[:filled] for name in self._ARRAYS if getattr(self, name) is not None}
        state.update(self.header())
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from ``state_dict`` output; the buffer must have the same sizes.

        Raises:
            UserError: The state was saved from a buffer of different sizes or version.
        """
        self.load_header(state)
        for name in self._ARRAYS:
            if getattr(self, name) is not None:
                getattr(self, name)[: len(state[name])] = state[name]

    # Incremental saving (rlvlmf.training.segments): the counters apart, and the arrays by
    # stream position (the n-th transition ever added is position n, in slot n mod capacity).
    @property
    def oldest(self) -> int:
        """Stream position of the oldest transition still in the buffer."""
        return max(0, self.total_added - self.capacity)

    def header(self) -> dict[str, np.ndarray]:
        """Sizes, counters and finished episodes: everything but the per-transition arrays."""
        counters = np.array(
            [_FORMAT_VERSION, self.capacity, self.obs_dim, self.action_dim, -1 if self.frame_size is None else self.frame_size,
             self.total_added, self._episode, self._step],
            dtype=np.int64,
        )
        return {"counters": counters, "finished": np.array(self._finished, dtype=np.int64).reshape(-1, 2)}

    def transitions(self, start: int, end: int) -> dict[str, np.ndarray]:
        """Every per-transition array at stream positions ``[start, end)``, which must still be held.

        Views into the buffer where the range does not wrap (write them out before adding more).
        """
        if not self.oldest <= start <= end <= self.total_added:
            raise ValueError(
                f"positions [{start}, {end}) are not all in the buffer (it holds [{self.oldest}, {self.total_added}))"
            )
        first = start % self.capacity
        if first + (end - start) <= self.capacity:  # no wrap: views, no copy (the writer copies to disk)
            index: slice | np.ndarray = slice(first, first + (end - start))
        else:
            index = np.arange(start, end) % self.capacity
        return {name: getattr(self, name)[index] for name in self._ARRAYS if getattr(self, name) is not None}

    def put_transitions(self, start: int, arrays: dict[str, np.ndarray], oldest: int) -> None:
        """Write ``transitions(start, ...)`` output back, skipping positions before ``oldest``."""
        n = len(arrays["obs"])
        skip = min(max(oldest - start, 0), n)
        slots = np.arange(start + skip, start + n) % self.capacity
        for name in self._ARRAYS:
            if getattr(self, name) is not None:
                getattr(self, name)[slots] = arrays[name][skip:]

    def put_rewards(self, start: int, values: np.ndarray, oldest: int) -> None:
        """Set the learned rewards of positions ``start, start + 1, ...``, skipping those before ``oldest``."""
        skip = min(max(oldest - start, 0), len(values))
        self.learned_reward[np.arange(start + skip, start + len(values)) % self.capacity] = values[skip:]

    def load_header(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``header()`` output; the buffer must have the same sizes.

        Raises:
            UserError: The header was saved from a buffer of different sizes or version.
        """
        counters = [int(v) for v in state["counters"]]
        frame_size = None if counters[4] < 0 else counters[4]
        expected = [_FORMAT_VERSION, self.capacity, self.obs_dim, self.action_dim, frame_size]
        if counters[:4] + [frame_size] != expected:
            raise UserError(
                f"replay buffer state has (version, capacity, obs_dim, action_dim, frame_size) = "
                f"{tuple(counters[:4] + [frame_size])}, this buffer {tuple(expected)}"
            )
        self.total_added, self._episode, self._step = counters[5:8]
        self._finished = deque((int(a), int(b)) for a, b in state["finished"])

    def save(self, path: str | Path) -> None:
        """Write the buffer atomically to an uncompressed ``.npz`` (no pickle)."""
        with atomic_open(path, "wb") as handle:
            np.savez(handle, allow_pickle=False, **self.state_dict())

    @classmethod
    def load(cls, path: str | Path) -> ReplayBuffer:
        """Rebuild a buffer saved with ``save``.

        Raises:
            UserError: The file is missing or not a replay buffer.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read replay buffer {path}: {err}") from err
        if "counters" not in state:
            raise UserError(f"{path} is not a replay buffer saved by rlvlmf")
        c = [int(v) for v in state["counters"]]
        buffer = cls(c[1], c[2], c[3], None if c[4] < 0 else c[4])
        buffer.load_state_dict(state)
        return buffer
