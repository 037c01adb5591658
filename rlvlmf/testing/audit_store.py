"""A query store with known contents, for the audit, export, relabel and audit-CLI tests.

Eight pairs cover every outcome (``CASES``), one of them is asked again swapped (a position
flip), one query failed, and one stored answer is hostile markup (``HOSTILE``) that every
view must show as text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.base import Answer, FramePair, Label
from rlvlmf.feedback.store import QueryStore, frame_hash, query_key
from rlvlmf.feedback.summary import ABSTAIN, CORRECT, NO_GT, WRONG

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
IDENTITY = {"family": "fake", "model": "fake-vlm-1"}
HOSTILE = "<script>alert(1)</script>"

CASES: list[tuple[float | None, float | None, int, str]] = [
    (0.0, 0.1, 1, CORRECT),
    (0.0, 0.2, 0, WRONG),
    (0.5, 0.3, 0, CORRECT),
    (0.0, 0.9, 1, CORRECT),
    (1.0, 0.0, 0, CORRECT),
    (0.0, 1.0, -1, ABSTAIN),
    (0.4, 0.4, 1, NO_GT),
    (None, None, 0, NO_GT),
]
"""(first return, second return, stored label, expected outcome); ``None`` returns = no ground truth."""


def _pair(rng: np.random.Generator, r1: float | None, r2: float | None, size: int = 24) -> FramePair:
    first, second = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    rewards = (None, None) if r1 is None else (np.array([r1]), np.array([r2]))
    return FramePair(first, second, *rewards)


def _record(store: QueryStore, pair: FramePair, answer: Answer | None, error: str | None = None) -> str:
    key = query_key(IDENTITY, TASK, frame_hash(pair.first), frame_hash(pair.second))
    store.record(key, pair, TASK, IDENTITY, answer, run_id="run-1", error=error)
    return key


def build_store(root: Path, rng: np.random.Generator) -> tuple[QueryStore, list[str]]:
    """The store of ``CASES``, plus the 4th pair asked swapped (a position flip) and one failed query.

    Returns:
        The open store and the keys of its rows, in the order written (``CASES``, swapped, failed).
    """
    store = QueryStore(root)
    keys = []
    pairs = []
    for i, (r1, r2, label, _) in enumerate(CASES):
        pair = _pair(rng, r1, r2)
        pairs.append(pair)
        stages = (HOSTILE if i == 1 else f"stage one of pair {i}", str(label))
        reason = "no difference" if label == -1 else None
        answer = Answer(Label(label), None, stages, reason, input_tokens=100, output_tokens=10, latency_s=0.5 + i, cost_usd=0.01)
        keys.append(_record(store, pair, answer))
    # Same raw label in the other order: the preference followed the position.
    keys.append(_record(store, pairs[3].swapped(), Answer(Label.SECOND, None, ("swapped", "1"), None, 100, 10, 2.0, 0.01)))
    keys.append(_record(store, _pair(rng, 0.0, 1.0), None, error="HTTP 500 from server"))
    return store, keys
