"""PEBBLE's unsupervised pre-training reward: a k-nearest-neighbour state-entropy estimate.

A state's intrinsic reward is its distance to its k-th nearest neighbour among the states
seen so far (large where the agent has rarely been), divided by a running standard deviation.
PEBBLE compares every batch against the whole replay buffer each update, so it slows as the
buffer grows; here the neighbours come from a uniform sample of at most ``reference_size``
states (all of them while there are fewer), which keeps the cost of an update fixed. The
state itself is excluded by row, never by value, so repeated states (fixed initial states)
still count as neighbours. It reads a plain array of states (the driver passes the replay
buffer's observations), so it depends on no buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlvlmf.errors import ConfigError
from rlvlmf.utils.device import as_device, to_device


def kth_neighbour_distance(
    states: torch.Tensor,
    reference: torch.Tensor,
    k: int,
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Euclidean distance from each state to its k-th nearest reference state.

    Args:
        states: ``(B, D)`` query states.
        reference: ``(M, D)`` reference states, ``M >= k`` (plus one per excluded match).
        k: Which neighbour (1 = nearest).
        exclude: Optional ``(state_ids (B,), reference_ids (M,))``; a reference with the same
            id as a state is not its neighbour (the state itself).
        chunk_size: States per ``cdist`` call, bounding memory to ``chunk_size * M`` floats.

    Returns:
        ``(B,)`` distances.
    """
    if len(reference) < k:
        raise ValueError(f"need at least k={k} reference states, got {len(reference)}")
    out = states.new_empty(len(states))
    for start in range(0, len(states), chunk_size):
        part = slice(start, start + chunk_size)
        distances = torch.cdist(states[part], reference)
        if exclude is not None:
            distances.masked_fill_(exclude[0][part, None] == exclude[1][None, :], float("inf"))
        out[part] = distances.topk(k, dim=1, largest=False).values[:, -1]
    return out


@dataclass
class RunningMeanStd:
    """Mean and variance over every value seen (parallel-merge update, float64)."""

    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-4

    def update(self, values: np.ndarray) -> None:
        """Merge a batch of values into the statistics."""
        values = np.asarray(values, np.float64)
        batch_mean, batch_var, n = float(values.mean()), float(values.var()), len(values)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> float:
        """Standard deviation of the values seen."""
        return float(np.sqrt(self.var))


class KNNStateEntropy:
    """Intrinsic reward for PEBBLE's unsupervised phase (holds only the running statistics)."""

    def __init__(self, k: int = 5, reference_size: int = 10_000, chunk_size: int = 256,
                 device: torch.device | str = "cpu") -> None:
        """Set the estimator's sizes.

        Args:
            k: Which neighbour's distance is the reward (PEBBLE: 5).
            reference_size: Most states compared against per call.
            chunk_size: Batch states per ``cdist`` call.
            device: Where the distances are computed and the rewards returned (the agent's).
        """
        self.device = as_device(device)
        if k < 1 or reference_size <= k or chunk_size < 1:
            raise ConfigError(
                f"k-NN entropy needs k >= 1, reference_size > k, chunk_size >= 1; got {k}, {reference_size}, {chunk_size}"
            )
        self.k, self.reference_size, self.chunk_size = k, reference_size, chunk_size
        self.stats = RunningMeanStd()

    def reward(self, states: np.ndarray, slots: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Normalised intrinsic rewards of the states at rows ``slots``.

        Args:
            states: ``(N, D)`` float32, every state seen so far (the replay buffer's
                observations, ``ReplayBuffer.observations``: row ``i`` is slot ``i``).
            slots: ``(B,)`` rows of the batch, e.g. from ``ReplayBuffer.sample_slots``.
            rng: Draws the reference sample when there are more than ``reference_size`` states.

        Returns:
            ``(B, 1)`` float32 rewards: k-th neighbour distance / running std.
        """
        filled = len(states)
        if filled <= self.k:
            raise ValueError(f"k-NN entropy needs more than k={self.k} states, got {filled}")
        reference_slots = np.arange(filled) if filled <= self.reference_size else rng.integers(0, filled, self.reference_size)
        batch = to_device(torch.from_numpy(states[slots]), self.device)
        reference = to_device(torch.from_numpy(states[reference_slots]), self.device)
        exclude = (to_device(torch.from_numpy(np.asarray(slots, np.int64)), self.device),
                   to_device(torch.from_numpy(reference_slots.astype(np.int64)), self.device))
        distances = kth_neighbour_distance(batch, reference, self.k, exclude, self.chunk_size)
        self.stats.update(distances.cpu().numpy())
        return (distances / max(self.stats.std, 1e-8)).unsqueeze(1)

    def state_dict(self) -> dict[str, float]:
        """The running statistics."""
        return {"mean": self.stats.mean, "var": self.stats.var, "count": self.stats.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore ``state_dict`` output."""
        self.stats = RunningMeanStd(float(state["mean"]), float(state["var"]), float(state["count"]))
