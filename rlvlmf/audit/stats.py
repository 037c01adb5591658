"""Label-quality statistics of stored queries: how far the VLM's labels can be trusted.

Everything here is a pure function of a list of ``StoredQuery`` rows, so the report, the
CLI and tests compute the same numbers the same way.

Terms used throughout:

- A row is *comparable* when it is ``ok`` and its ground-truth label is a real preference
  (0 or 1). Its *outcome* is ``correct`` (label equals the ground truth), ``wrong`` (the
  other real label) or ``abstain`` (``Label.NONE``: no preference or an abstain).
- *Agreement* is ``correct / (correct + wrong)``: abstains are not counted as errors,
  matching ``QueryStore.stats``.
- The *gap* of a pair is ``|first_return - second_return|``, the ground-truth progress
  difference the RL-VLM-F paper bins its label-error analysis by.
- A *flip* is a pair asked in both orders (two rows with swapped frames, same backend and
  goal) whose two real labels disagree once the swap is undone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.base import Label
from rlvlmf.feedback.store import StoredQuery, canonical_json

CORRECT = "correct"
WRONG = "wrong"
ABSTAIN = "abstain"
NO_GT = "no-gt"
"""Outcome of an ok row whose ground truth is unknown or a tie."""
FAILED = "failed"
"""Outcome of a row whose query failed for good."""

LABEL_NAMES: dict[int, str] = {0: "first", 1: "second", -1: "none"}
GT_ROWS: tuple[int | None, ...] = (0, 1, -1, None)
"""Rows of the confusion table: ground truth first, second, tie, unknown."""
LABEL_COLUMNS: tuple[int, ...] = (0, 1, -1)
"""Columns of the confusion table: the stored label."""


def outcome(row: StoredQuery) -> str:
    """Classify one row as ``correct``, ``wrong``, ``abstain``, ``no-gt`` or ``failed``."""
    if not row.ok:
        return FAILED
    if row.gt_label is None or row.gt_label is Label.NONE:
        return NO_GT
    if row.label is Label.NONE:
        return ABSTAIN
    return CORRECT if row.label == row.gt_label else WRONG


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


def _order_free_key(row: StoredQuery) -> tuple[str, str, frozenset[str]]:
    return canonical_json(row.identity), row.goal, frozenset((row.first_frame, row.second_frame))


@dataclass(frozen=True)
class FlipStats:
    """Pairs asked in both orders.

    Attributes:
        both_orders: Pairs with an ok row in each order.
        compared: Of those, pairs with a real label in both orders.
        flips: Of those, pairs whose labels disagree once the swap is undone.
    """

    both_orders: int
    compared: int
    flips: int

    @property
    def flip_rate(self) -> float | None:
        """``flips / compared``, ``None`` when no pair was compared."""
        return self.flips / self.compared if self.compared else None


def flip_stats(rows: Sequence[StoredQuery]) -> FlipStats:
    """Find pairs stored in both orders and count position flips among them."""
    by_pair: dict[tuple[str, str, frozenset[str]], list[StoredQuery]] = {}
    for row in rows:
        if row.ok and row.first_frame != row.second_frame:
            by_pair.setdefault(_order_free_key(row), []).append(row)
    both = compared = flips = 0
    for group in by_pair.values():
        forward = [r for r in group if r.first_frame == group[0].first_frame]
        backward = [r for r in group if r.first_frame != group[0].first_frame]
        if not (forward and backward):
            continue
        both += 1
        a, b = forward[0].label, backward[0].label
        if a is Label.NONE or b is Label.NONE:
            continue
        compared += 1
        flips += int(a == b)  # the same raw label in both orders means the preference moved with the position
    return FlipStats(both, compared, flips)


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    result = {f"p{q}": float(np.percentile(array, q)) for q in (50, 90, 99)}
    result["mean"] = float(array.mean())
    result["max"] = float(array.max())
    return result


@dataclass(frozen=True)
class AuditSummary:
    """Headline numbers of a set of rows.

    Attributes:
        queries: Rows (ok and failed).
        ok: Rows holding an answer.
        failed: Rows whose query failed for good.
        labels: Ok rows per stored label (keys 0, 1, -1).
        abstains: Ok rows per abstain reason.
        outcomes: Rows per outcome (``correct``, ``wrong``, ``abstain``, ``no-gt``, ``failed``).
        flips: Position-flip statistics.
        input_tokens: Prompt tokens over all rows.
        output_tokens: Completion tokens over all rows.
        cost_usd: Estimated dollars over all rows.
        latency_s: ``p50``/``p90``/``p99``/``mean``/``max`` latency of ok rows (empty if none).
        by_backend: Rows per ``family:model``.
        by_run: Rows per run id (``"-"`` for none).
    """

    queries: int
    ok: int
    failed: int
    labels: dict[int, int]
    abstains: dict[str, int]
    outcomes: dict[str, int]
    flips: FlipStats
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: dict[str, float]
    by_backend: dict[str, int]
    by_run: dict[str, int]

    @property
    def agreement(self) -> float | None:
        """``correct / (correct + wrong)`` over comparable rows, ``None`` when none."""
        labeled = self.outcomes.get(CORRECT, 0) + self.outcomes.get(WRONG, 0)
        return self.outcomes.get(CORRECT, 0) / labeled if labeled else None

    @property
    def cost_per_label(self) -> float | None:
        """Dollars per ok row with a real label, ``None`` when there is none."""
        labeled = self.labels.get(0, 0) + self.labels.get(1, 0)
        return self.cost_usd / labeled if labeled else None


def summarize(rows: Sequence[StoredQuery]) -> AuditSummary:
    """Compute the headline numbers of a set of rows (see ``AuditSummary``)."""
    ok_rows = [row for row in rows if row.ok]
    return AuditSummary(
        queries=len(rows),
        ok=len(ok_rows),
        failed=len(rows) - len(ok_rows),
        labels={label: sum(int(row.label) == label for row in ok_rows) for label in LABEL_COLUMNS},
        abstains=dict(Counter(row.abstain_reason for row in ok_rows if row.abstain_reason is not None)),
        outcomes={kind: 0 for kind in (CORRECT, WRONG, ABSTAIN, NO_GT, FAILED)} | dict(Counter(map(outcome, rows))),
        flips=flip_stats(rows),
        input_tokens=sum(row.input_tokens for row in rows),
        output_tokens=sum(row.output_tokens for row in rows),
        cost_usd=float(sum(row.cost_usd for row in rows)),
        latency_s=_percentiles([row.latency_s for row in ok_rows]),
        by_backend=dict(Counter(f"{row.family}:{row.model}" if row.model else row.family for row in rows)),
        by_run=dict(Counter(row.run_id or "-" for row in rows)),
    )
