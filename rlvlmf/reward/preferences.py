"""The preference dataset: labelled pairs of frames or segments, kept for refitting.

Pairs are stored as the reward model's inputs (uint8 frames at its resolution and/or
float32 state vectors), so refitting never touches the replay buffer, and a pair stays
valid after the buffer overwrites the steps it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from rlvlmf.errors import ConfigError, UserError
from rlvlmf.reward.inputs import RewardInputs
from rlvlmf.utils.atomic import atomic_open

UNKNOWN_LABEL = -2
"""Ground-truth label value meaning "the env has no ground truth for this pair"."""

_FORMAT_VERSION = 1


class PreferenceBatch(NamedTuple):
    """Pairs drawn from a ``PreferenceDataset``.

    Attributes:
        first: Inputs of the first segments, fields shaped ``(N, T, ...)``.
        second: Inputs of the second segments.
        labels: ``(N,)`` int64 labels in {0, 1, -1}.
        gt_labels: ``(N,)`` int64 ground-truth labels in {0, 1, -1}, or ``UNKNOWN_LABEL``.
    """

    first: RewardInputs
    second: RewardInputs
    labels: np.ndarray
    gt_labels: np.ndarray


class PreferenceDataset:
    """A capped FIFO of labelled pairs with a fixed train / held-out split.

    Each pair is assigned to the held-out set when it is added (with probability
    ``heldout_fraction``, drawn from the caller's generator) and stays there, so held-out
    accuracy always measures labels the ensemble never trained on.
    """

    def __init__(self, capacity: int, heldout_fraction: float = 0.0) -> None:
        if capacity < 1:
            raise ConfigError(f"preference dataset capacity must be >= 1, got {capacity}")
        if not 0.0 <= heldout_fraction < 1.0:
            raise ConfigError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
        self.capacity = capacity
        self.heldout_fraction = heldout_fraction
        self._arrays: dict[str, np.ndarray] = {}
        self._size = 0
        self._next = 0  # slot the next pair goes to
        self.total_added = 0
        """Pairs ever added, including those dropped by the cap."""

    def __len__(self) -> int:
        return self._size

    # ------------------------------------------------------------------ adding
    def add(
        self,
        first: RewardInputs,
        second: RewardInputs,
        labels: np.ndarray,
        rng: np.random.Generator,
        *,
        gt_labels: np.ndarray | None = None,
        query_ids: np.ndarray | None = None,
    ) -> None:
        """Append labelled pairs.

        Args:
            first: Inputs of the first segments: frames ``(N, T, S, S, 3)`` uint8 and/or
                states ``(N, T, D)`` float32 (``T = 1`` for single frames).
            second: Inputs of the second segments, same shapes.
            labels: ``(N,)`` labels in {0, 1, -1}.
            rng: Draws the held-out assignment.
            gt_labels: ``(N,)`` ground-truth labels where the env has them.
            query_ids: ``(N,)`` ids of the queries in the feedback store (-1 if none).

        Raises:
            ValueError: On inconsistent shapes, dtypes or label values.
        """
        labels = np.asarray(labels)
        n = len(labels)
        if n == 0:
            return
        if labels.ndim != 1 or not np.isin(labels, (0, 1, -1)).all():
            raise ValueError(f"labels must be a 1-D array of 0, 1 or -1, got {labels!r}")
        gt = np.full(n, UNKNOWN_LABEL, np.int8) if gt_labels is None else np.asarray(gt_labels)
        ids = np.full(n, -1, np.int64) if query_ids is None else np.asarray(query_ids)
        if gt.shape != (n,) or ids.shape != (n,):
            raise ValueError(f"gt_labels and query_ids must have shape ({n},), got {gt.shape} and {ids.shape}")
        rows: dict[str, np.ndarray] = {
            "labels": labels.astype(np.int8),
            "gt_labels": gt.astype(np.int8),
            "query_ids": ids.astype(np.int64),
            "heldout": rng.random(n) < self.heldout_fraction,
        }
        for side, inputs in (("first", first), ("second", second)):
            if inputs.frames is not None:
                if inputs.frames.dtype != np.uint8 or inputs.frames.ndim != 5 or inputs.frames.shape[0] != n:
                    raise ValueError(
                        f"{side}.frames must be (N, T, S, S, 3) uint8 with N={n}, got {inputs.frames.shape} {inputs.frames.dtype}"
                    )
                rows[f"{side}_frames"] = inputs.frames
            if inputs.states is not None:
                if inputs.states.ndim != 3 or inputs.states.shape[0] != n:
                    raise ValueError(f"{side}.states must be (N, T, D) with N={n}, got {inputs.states.shape}")
                rows[f"{side}_states"] = inputs.states.astype(np.float32, copy=False)
        if self._arrays and set(rows) != set(self._arrays):
            raise ValueError(f"pairs must carry the same fields as before: {sorted(self._arrays)}, got {sorted(rows)}")
        for start in range(0, n, self.capacity):  # more pairs than capacity: keep the newest
            self._write({k: v[start:start + self.capacity] for k, v in rows.items()})

    def _write(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows["labels"])
        self._reserve(rows, self._size + n)
        slots = (self._next + np.arange(n)) % self.capacity
        for key, value in rows.items():
            if value.shape[1:] != self._arrays[key].shape[1:]:
                raise ValueError(f"{key} has per-pair shape {value.shape[1:]}, the dataset holds {self._arrays[key].shape[1:]}")
            self._arrays[key][slots] = value
        self._next = int((self._next + n) % self.capacity)
        self._size = min(self._size + n, self.capacity)
        self.total_added += n

    def _reserve(self, rows: dict[str, np.ndarray], needed: int) -> None:
        """Grow storage by doubling (up to the capacity) so memory follows the labels used."""
        allocated = len(self._arrays["labels"]) if self._arrays else 0
        if needed <= allocated or allocated == self.capacity:
            return
        new_len = min(self.capacity, max(needed, 2 * allocated, 64))
        for key, value in rows.items():
            grown = np.zeros((new_len, *value.shape[1:]), dtype=value.dtype)
            if key in self._arrays:
                grown[:allocated] = self._arrays[key]
            self._arrays[key] = grown

    # ------------------------------------------------------------------ reading
    def _valid_slots(self) -> np.ndarray:
        """Slots holding pairs, oldest first."""
        if self._size < self.capacity:
            return np.arange(self._size)
        return (self._next + np.arange(self.capacity)) % self.capacity

    def train_indices(self) -> np.ndarray:
        """Slots of the pairs used for training, oldest first."""
        slots = self._valid_slots()
        return slots[~self._arrays["heldout"][slots]] if self._size else slots

    def heldout_indices(self) -> np.ndarray:
        """Slots of the held-out pairs, oldest first."""
        slots = self._valid_slots()
        return slots[self._arrays["heldout"][slots]] if self._size else slots

    def batch(self, indices: np.ndarray) -> PreferenceBatch:
        """The pairs at the given slots.

        Args:
            indices: Slots from ``train_indices`` / ``heldout_indices``, any 1-D int array.

        Returns:
            A ``PreferenceBatch`` whose arrays have leading size ``len(indices)``.
        """
        a = self._arrays

        def side(name: str) -> RewardInputs:
            frames = a.get(f"{name}_frames")
            states = a.get(f"{name}_states")
            return RewardInputs(None if frames is None else frames[indices], None if states is None else states[indices])

        return PreferenceBatch(
            side("first"), side("second"), a["labels"][indices].astype(np.int64), a["gt_labels"][indices].astype(np.int64)
        )

    def labels_at(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, gt_labels)`` int64 at the given slots, without gathering any inputs."""
        if not self._arrays:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self._arrays["labels"][indices].astype(np.int64), self._arrays["gt_labels"][indices].astype(np.int64)

    def newest_indices(self, count: int) -> np.ndarray:
        """Slots of the newest ``count`` pairs (all if fewer), oldest first."""
        slots = self._valid_slots()
        return slots[max(len(slots) - count, 0):]

    def all(self) -> PreferenceBatch:
        """Every stored pair, oldest first."""
        return self.batch(self._valid_slots())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the dataset atomically to an ``.npz`` file (no pickle), oldest pair first."""
        slots = self._valid_slots()
        arrays = {key: value[slots] for key, value in self._arrays.items()}
        meta = np.array([_FORMAT_VERSION, self.capacity, self.total_added], dtype=np.int64)
        with atomic_open(path, "wb") as f:  # a file object also stops numpy appending ".npz"
            np.savez(f, meta=meta, heldout_fraction=np.float64(self.heldout_fraction), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PreferenceDataset:
        """Read a dataset written by ``save``.

        Raises:
            UserError: If the file is not a preference dataset of a known version.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read preference dataset {path}: {err}") from err
        meta = stored.pop("meta", None)
        if meta is None or int(meta[0]) != _FORMAT_VERSION:
            raise UserError(f"{path} is not a preference dataset written by this version of rlvlmf")
        return cls.from_rows(int(meta[1]), float(stored.pop("heldout_fraction")), int(meta[2]), stored)

    # Incremental saving (rlvlmf.training.segments): pairs are never changed once added, so a
    # checkpoint writes only the pairs added since the previous one.
    def newest_rows(self, count: int) -> dict[str, np.ndarray]:
        """Copies of every array of the newest ``count`` pairs (all if fewer), oldest first."""
        slots = self.newest_indices(count)
        return {key: value[slots] for key, value in self._arrays.items()}

    @classmethod
    def from_rows(cls, capacity: int, heldout_fraction: float, total_added: int,
                  rows: dict[str, np.ndarray]) -> PreferenceDataset:
        """A dataset holding ``rows`` (``newest_rows`` output, oldest first; at most ``capacity``)."""
        dataset = cls(capacity, heldout_fraction)
        if rows:
            n = len(rows["labels"])
            dataset._reserve(rows, n)
            for key, value in rows.items():
                dataset._arrays[key][:n] = value
            dataset._size = n
            dataset._next = n % dataset.capacity
        dataset.total_added = total_added
        return dataset
