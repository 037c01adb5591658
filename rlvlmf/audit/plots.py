"""Audit plots as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless; must precede the pyplot import

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rlvlmf.audit.stats import GT_ROWS, LABEL_COLUMNS, LABEL_NAMES, GapBin  # noqa: E402

_DPI = 100


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def agreement_by_gap_png(bins: Sequence[GapBin]) -> bytes:
    """Stacked bars of correct / wrong / no-preference shares per gap bin, agreement as a line.

    Args:
        bins: Output of ``rlvlmf.audit.stats.gap_bins``.

    Returns:
        PNG bytes.
    """
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    if not bins:
        axis.text(0.5, 0.5, "no pairs with a ground-truth preference", ha="center", va="center")
        axis.set_axis_off()
        return _png(figure)
    x = np.arange(len(bins))
    totals = np.array([max(b.total, 1) for b in bins], dtype=np.float64)
    shares = {
        "correct": np.array([b.correct for b in bins]) / totals,
        "wrong": np.array([b.wrong for b in bins]) / totals,
        "no preference": np.array([b.abstain for b in bins]) / totals,
    }
    bottom = np.zeros(len(bins))
    for (name, share), color in zip(shares.items(), ("#4c9a2a", "#c0392b", "#999999")):
        axis.bar(x, share, bottom=bottom, color=color, label=name, width=0.8)
        bottom += share
    agreement = [np.nan if b.agreement is None else b.agreement for b in bins]
    axis.plot(x, agreement, "k-o", label="agreement (excl. no pref.)")
    for xi, b in zip(x, bins):
        axis.text(float(xi), 1.02, f"n={b.total}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(x, [f"{b.low:.3g}–{b.high:.3g}" for b in bins], rotation=30, ha="right", fontsize=8)
    axis.set_ylim(0, 1.12)
    axis.set_xlabel("ground-truth return gap |R1 - R2|")
    axis.set_ylabel("share of pairs")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_title("VLM label vs ground truth, by gap")
    return _png(figure)


def confusion_png(table: dict[int | None, dict[int, int]]) -> bytes:
    """Heat map of the confusion table from ``rlvlmf.audit.stats.confusion``."""
    matrix = np.array([[table[gt][label] for label in LABEL_COLUMNS] for gt in GT_ROWS], dtype=np.int64)
    figure, axis = plt.subplots(figsize=(4.2, 3.4))
    axis.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        axis.text(j, i, str(count), ha="center", va="center", color="black" if count <= matrix.max() / 2 else "white")
    axis.set_xticks(range(len(LABEL_COLUMNS)), [LABEL_NAMES[c] for c in LABEL_COLUMNS])
    axis.set_yticks(range(len(GT_ROWS)), ["first", "second", "tie", "unknown"])
    axis.set_xlabel("stored label")
    axis.set_ylabel("ground truth")
    axis.set_title("confusion")
    return _png(figure)


def latency_png(latencies: Sequence[float]) -> bytes:
    """Histogram of per-query latency in seconds."""
    figure, axis = plt.subplots(figsize=(4.8, 3.0))
    if len(latencies):
        axis.hist(np.asarray(latencies, dtype=np.float64), bins=min(30, max(5, len(latencies) // 5)), color="#3465a4")
    else:
        axis.text(0.5, 0.5, "no answered queries", ha="center", va="center")
    axis.set_xlabel("latency (s)")
    axis.set_ylabel("queries")
    axis.set_title("latency")
    return _png(figure)
