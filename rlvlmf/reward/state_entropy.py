"""PEBBLE's unsupervised pre-training reward: k-NN particle estimate of state entropy.

r(s) = distance from s to its k-th nearest neighbour among buffer states, divided by a
running standard deviation of those distances. The reference scans the whole buffer every
update, so it slows as the buffer grows; here the neighbours come from a uniform sample of
at most ``reference_size`` buffer states, which keeps each update's cost fixed.
"""

from __future__ import annotations

import numpy as np
import torch


class StateEntropyReward:
    """Intrinsic reward for exploration, with running normalisation.

    Args:
        k: Which neighbour's distance is the reward (PEBBLE: 5).
        reference_size: Most buffer states compared against per call.
    """

    def __init__(self, k: int = 5, reference_size: int = 10_000) -> None:
        if k < 1 or reference_size <= k:
            raise ValueError(f"need k >= 1 and reference_size > k, got {k}, {reference_size}")
        self.k = k
        self.reference_size = reference_size
        self.count = 0.0
        self.mean = 0.0
        self.var = 1.0

    def __call__(self, states: torch.Tensor, buffer_states: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Rewards of ``states`` ``(B, D)`` against ``buffer_states`` ``(N, D)``; returns ``(B,)``."""
        if len(buffer_states) > self.reference_size:
            buffer_states = buffer_states[rng.choice(len(buffer_states), self.reference_size, replace=False)]
        reference = torch.from_numpy(np.ascontiguousarray(buffer_states, dtype=np.float32))
        distances = torch.cdist(states, reference)
        # k + 1: a state that is itself in the reference sample is its own nearest neighbour.
        kth = min(self.k + 1, reference.shape[0])
        reward = distances.topk(kth, dim=1, largest=False).values[:, -1]
        self._update(reward)
        return reward / (self.var**0.5 + 1e-8)

    def _update(self, values: torch.Tensor) -> None:
        """Chan et al.'s parallel update of the running mean and variance."""
        batch_mean = float(values.mean())
        batch_var = float(values.var(unbiased=False))
        n = values.numel()
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict[str, float]:
        """Running statistics, for exact resume."""
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore ``state_dict`` output."""
        self.count, self.mean, self.var = float(state["count"]), float(state["mean"]), float(state["var"])
