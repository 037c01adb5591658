"""Label-quality statistics of stored queries beyond the store summary: gap bins and confusion.

Everything here is a pure function of a list of ``StoredQuery`` rows, so the report, the
CLI and tests compute the same numbers the same way. The headline summary (counts,
outcomes, agreement, flips, cost) is ``rlvlmf.feedback.summary``; its terms (*comparable*,
*outcome*, *agreement*) hold here too. The *gap* of a pair is
``|first_return - second_return|``, the ground-truth progress difference the RL-VLM-F paper
bins its label-error analysis by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.store import StoredQuery
from rlvlmf.feedback.summary import ABSTAIN, CORRECT, WRONG, outcome

LABEL_NAMES: dict[int, str] = {0: "first", 1: "second", -1: "none"}
GT_ROWS: tuple[int | None, ...] = (0, 1, -1, None)
"""Rows of the confusion table: ground truth first, second, tie, unknown."""
LABEL_COLUMNS: tuple[int, ...] = (0, 1, -1)
"""Columns of the confusion table: the stored label."""


def gap(row: StoredQuery) -> float | None:
    """Ground-truth return gap ``|first_return - second_return|``, ``None`` without returns."""
    if row.first_return is None or row.second_return is None:
        return None
    return abs(row.first_return - row.second_return)


@dataclass(frozen=True)
class GapBin:
    """Outcomes of the comparable rows whose gap falls in ``[low, high)`` (last bin closed)."""

    low: float
    high: float
    correct: int
    wrong: int
    abstain: int

    @property
    def total(self) -> int:
        """Comparable rows in the bin."""
        return self.correct + self.wrong + self.abstain

    @property
    def agreement(self) -> float | None:
        """``correct / (correct + wrong)``, ``None`` when the bin has no real label."""
        labeled = self.correct + self.wrong
        return self.correct / labeled if labeled else None


def gap_bins(rows: Sequence[StoredQuery], num_bins: int = 5, edges: Sequence[float] | None = None) -> list[GapBin]:
    """Bin the comparable rows by ground-truth return gap.

    Args:
        rows: Stored rows; only comparable ones (see module docstring) are binned.
        num_bins: Equal-width bins from 0 to the largest gap (ignored with ``edges``).
        edges: Explicit increasing bin edges, ``len(edges) - 1`` bins. Gaps outside are dropped.

    Returns:
        One ``GapBin`` per bin, in increasing gap order; empty when no row is comparable.

    Raises:
        ConfigError: ``num_bins < 1`` or edges that are not increasing.
    """
    if num_bins < 1:
        raise ConfigError(f"number of gap bins must be >= 1, got {num_bins}")
    scored = [(g, outcome(row)) for row in rows if (g := gap(row)) is not None and outcome(row) in (CORRECT, WRONG, ABSTAIN)]
    if not scored:
        return []
    if edges is None:
        top = max(g for g, _ in scored)
        bounds = np.linspace(0.0, top if top > 0 else 1.0, num_bins + 1)
    else:
        bounds = np.asarray(edges, dtype=np.float64)
        if bounds.ndim != 1 or len(bounds) < 2 or np.any(np.diff(bounds) <= 0):
            raise ConfigError(f"gap bin edges must be at least two increasing numbers, got {list(edges)}")
    counts = np.zeros((len(bounds) - 1, 3), dtype=np.int64)
    column = {CORRECT: 0, WRONG: 1, ABSTAIN: 2}
    for g, kind in scored:
        if g < bounds[0] or g > bounds[-1]:
            continue
        # Right-closed last bin, so the largest gap lands in the top bin.
        index = min(int(np.searchsorted(bounds, g, side="right")) - 1, len(bounds) - 2)
        counts[index, column[kind]] += 1
    return [
        GapBin(float(bounds[i]), float(bounds[i + 1]), int(c[0]), int(c[1]), int(c[2])) for i, c in enumerate(counts)
    ]


def confusion(rows: Sequence[StoredQuery]) -> dict[int | None, dict[int, int]]:
    """Counts of (ground truth, stored label) over ok rows.

    Returns:
        ``table[gt][label]`` with ``gt`` in ``GT_ROWS`` (``None`` = unknown, -1 = tie) and
        ``label`` in ``LABEL_COLUMNS``.
    """
    table: dict[int | None, dict[int, int]] = {gt: {label: 0 for label in LABEL_COLUMNS} for gt in GT_ROWS}
    for row in rows:
        if row.ok:
            table[None if row.gt_label is None else int(row.gt_label)][int(row.label)] += 1
    return table
