"""The summary of a set of query-store rows: how many, which labels, how far to trust them, what they cost.

``summarize`` is a pure function of ``StoredQuery`` rows, and ``StoreStats`` its one result,
so ``QueryStore.stats``, ``rlvlmf queries stats`` and the audit report show the same numbers
computed the same way.

Terms used throughout:

- A row is *comparable* when it is ``ok`` and its ground-truth label is a real preference
  (0 or 1). Its *outcome* is ``correct`` (label equals the ground truth), ``wrong`` (the
  other real label) or ``abstain`` (``Label.NONE``: no preference or an abstain).
- *Agreement* is ``correct / (correct + wrong)``: abstains are not counted as errors.
- A *flip* is a pair asked in both orders (two rows with swapped frames, same backend and
  goal) whose two real labels disagree once the swap is undone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rlvlmf.feedback.base import Label
from rlvlmf.utils.hashing import canonical_json

if TYPE_CHECKING:  # the store imports this module for QueryStore.stats
    from rlvlmf.feedback.store import StoredQuery

CORRECT = "correct"
WRONG = "wrong"
ABSTAIN = "abstain"
NO_GT = "no-gt"
"""Outcome of an ok row whose ground truth is unknown or a tie."""
FAILED = "failed"
"""Outcome of a row whose query failed for good."""
OUTCOME_NAMES: tuple[str, ...] = (CORRECT, WRONG, ABSTAIN, NO_GT, FAILED)


def outcome(row: StoredQuery) -> str:
    """Classify one row as ``correct``, ``wrong``, ``abstain``, ``no-gt`` or ``failed``."""
    if not row.ok:
        return FAILED
    if row.gt_label is None or row.gt_label is Label.NONE:
        return NO_GT
    if row.label is Label.NONE:
        return ABSTAIN
    return CORRECT if row.label == row.gt_label else WRONG


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


def _order_free_key(row: StoredQuery) -> tuple[str, str, frozenset[str]]:
    return canonical_json(row.identity), row.goal, frozenset((row.first_frame, row.second_frame))


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
class StoreStats:
    """Summary of a set of store rows (one run, one labeler, or all).

    Attributes:
        total: Rows counted (ok and failed).
        ok: Rows holding an answer.
        failed: Rows whose query failed for good.
        labels: Ok rows per stored label that occurs (keys among ``0``, ``1``, ``-1``).
        abstains: Ok rows per abstain reason.
        outcomes: Rows per outcome (``correct``, ``wrong``, ``abstain``, ``no-gt``, ``failed``; all present).
        flips: Position-flip statistics.
        input_tokens: Prompt tokens over all rows.
        output_tokens: Completion tokens over all rows.
        cost_usd: Estimated dollars over all rows.
        latency_s: ``p50``/``p90``/``p99``/``mean``/``max`` latency of ok rows (empty when none).
        by_backend: Rows per ``family:model``.
        by_run: Rows per run id (``"-"`` for none).
    """

    total: int
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
    def with_gt(self) -> int:
        """Ok rows with a real label and a real ground-truth label (correct + wrong)."""
        return self.outcomes[CORRECT] + self.outcomes[WRONG]

    @property
    def agree(self) -> int:
        """Of those, how many match the ground truth."""
        return self.outcomes[CORRECT]

    @property
    def agreement(self) -> float | None:
        """``correct / (correct + wrong)`` over comparable rows, ``None`` when none."""
        return self.agree / self.with_gt if self.with_gt else None

    @property
    def cost_per_label(self) -> float | None:
        """Dollars per ok row with a real label, ``None`` when there is none."""
        labeled = self.labels.get(0, 0) + self.labels.get(1, 0)
        return self.cost_usd / labeled if labeled else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "abstains": self.abstains,
            "outcomes": self.outcomes,
            "with_gt": self.with_gt,
            "agree": self.agree,
            "agreement": self.agreement,
            "flips": {"both_orders": self.flips.both_orders, "compared": self.flips.compared, "flips": self.flips.flips,
                      "flip_rate": self.flips.flip_rate},
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "cost_per_label_usd": self.cost_per_label,
            "latency_s": self.latency_s,
            "by_backend": self.by_backend,
            "by_run": self.by_run,
        }


def summarize(rows: Iterable[StoredQuery]) -> StoreStats:
    """Compute the summary of a set of rows (see ``StoreStats``)."""
    rows = list(rows)
    ok_rows = [row for row in rows if row.ok]
    return StoreStats(
        total=len(rows),
        ok=len(ok_rows),
        failed=len(rows) - len(ok_rows),
        labels=dict(Counter(int(row.label) for row in ok_rows)),
        abstains=dict(Counter(row.abstain_reason for row in ok_rows if row.abstain_reason is not None)),
        outcomes={kind: 0 for kind in OUTCOME_NAMES} | dict(Counter(map(outcome, rows))),
        flips=flip_stats(rows),
        input_tokens=sum(row.input_tokens for row in rows),
        output_tokens=sum(row.output_tokens for row in rows),
        cost_usd=float(sum(row.cost_usd for row in rows)),
        latency_s=_percentiles([row.latency_s for row in ok_rows]),
        by_backend=dict(Counter(f"{row.family}:{row.model}" if row.model else row.family for row in rows)),
        by_run=dict(Counter(row.run_id or "-" for row in rows)),
    )
