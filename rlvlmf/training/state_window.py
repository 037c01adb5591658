"""The query window: simulator states of the last N episodes, re-rendered when a pair is chosen.

RL-VLM-F draws each round's pairs from its last 100 episodes. Keeping those steps as frames at
the VLM's size would take gigabytes (100 MetaWorld episodes are 50,000 frames of 300x300), so
the window keeps each step's simulator state instead (``rlvlmf.envs.sim_state``: tens of
floats per step, plus a few hundred per episode) and only the chosen steps are drawn again,
at the VLM's size, when a round starts.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class StateWindow:
    """Step states of the last ``max_episodes`` finished episodes and of the current one.

    Steps are identified by their position in the stream of all steps ever stored (the
    replay buffer's ``total_added`` before the step), so the replay slot is
    ``position % capacity``.
    """

    def __init__(self, max_episodes: int) -> None:
        if max_episodes < 1:
            raise ValueError(f"the query window needs >= 1 episode, got {max_episodes}")
        self.max_episodes = max_episodes
        # Finished episodes, oldest first: (first position, (length, D) step states, episode state).
        self.finished: deque[tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=max_episodes)
        self._start = -1
        self._steps: list[np.ndarray] = []
        self._episode_state = np.zeros(0)

    def __len__(self) -> int:
        return sum(len(states) for _, states, _ in self.finished) + len(self._steps)

    def add(self, position: int, step_state: np.ndarray, episode_state: np.ndarray | None = None) -> None:
        """Record one step; the first step of an episode also brings its ``episode_state``."""
        if not self._steps:
            if episode_state is None:
                raise ValueError("the first step of an episode needs its episode state")
            self._start, self._episode_state = position, np.asarray(episode_state, np.float64)
        elif position != self._start + len(self._steps):
            raise ValueError(f"step {position} does not follow step {self._start + len(self._steps) - 1}")
        self._steps.append(np.asarray(step_state, np.float64))

    @property
    def in_episode(self) -> bool:
        """Whether the current episode has steps (the next ``add`` continues it)."""
        return bool(self._steps)

    def end_episode(self) -> None:
        """Close the current episode (it then counts towards ``max_episodes``)."""
        if self._steps:
            self.finished.append((self._start, np.stack(self._steps), self._episode_state))
            self._steps = []

    def _episodes(self, oldest: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        current = [(self._start, np.stack(self._steps), self._episode_state)] if self._steps else []
        return [ep for ep in [*self.finished, *current] if ep[0] >= oldest]

    def episode_slots(self, capacity: int, total_added: int) -> list[np.ndarray]:
        """Replay slots of each episode in the window whose steps are all still in the buffer."""
        oldest = total_added - capacity
        return [(start + np.arange(len(states))) % capacity for start, states, _ in self._episodes(oldest)]

    def states_of(self, slots: np.ndarray, capacity: int, total_added: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(episode state, step state)`` of each slot (slots from ``episode_slots``).

        Raises:
            KeyError: A slot is not in the window.
        """
        where: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for start, states, episode in self._episodes(total_added - capacity):
            for offset, slot in enumerate(((start + np.arange(len(states))) % capacity).tolist()):
                where[slot] = (episode, states[offset])
        return [where[int(s)] for s in np.asarray(slots).ravel()]

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (exact resume, including a half-finished episode)."""
        episodes = [*self.finished, *([(self._start, np.stack(self._steps), self._episode_state)] if self._steps else [])]
        step_dim = episodes[0][1].shape[1] if episodes else 0
        episode_dim = episodes[0][2].size if episodes else 0
        return {
            "window_meta": np.array([self.max_episodes, len(self.finished), step_dim, episode_dim], np.int64),
            "window_starts": np.array([e[0] for e in episodes], np.int64),
            "window_lengths": np.array([len(e[1]) for e in episodes], np.int64),
            "window_steps": np.concatenate([e[1] for e in episodes]) if episodes else np.zeros((0, 0)),
            "window_episodes": np.stack([e[2] for e in episodes]) if episodes else np.zeros((0, 0)),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore from ``state_dict`` output."""
        self.max_episodes, finished = int(state["window_meta"][0]), int(state["window_meta"][1])
        lengths = np.asarray(state["window_lengths"], np.int64)
        steps = np.split(np.asarray(state["window_steps"], np.float64), np.cumsum(lengths)[:-1]) if len(lengths) else []
        episodes = [(int(start), part, np.asarray(ep, np.float64))
                    for start, part, ep in zip(state["window_starts"], steps, state["window_episodes"])]
        self.finished = deque(episodes[:finished], maxlen=self.max_episodes)
        self._steps, self._start, self._episode_state = [], -1, np.zeros(0)
        if len(episodes) > finished:
            self._start, current, self._episode_state = episodes[finished]
            self._steps = list(current)
