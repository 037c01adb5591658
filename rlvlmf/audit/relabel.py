"""Human labels for stored pairs, kept beside the VLM's answers.

A person's label is a row of its own with ``labeler="human"``: the original answer stays
untouched, so the two can be compared and either one used to train. The human row copies
the pair (goal, frames, ground truth, run) from the row it relabels and records that row's
key and label in ``meta``.

The CSV read here has a header with at least the columns ``key`` and ``label``; an optional
``note`` column is stored as the row's only stage text. The audit report writes a template
with these columns (label left blank) for the pairs worth a second look.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rlvlmf.errors import UserError
from rlvlmf.feedback.base import Label
from rlvlmf.feedback.store import STATUS_OK, QueryStore, StoredQuery, canonical_json

HUMAN_LABELER = "human"
CSV_COLUMNS: tuple[str, ...] = ("key", "label", "note")
"""Columns relabelling reads; other columns (the template's context) are ignored."""

_LABEL_WORDS: dict[str, Label] = {
    "0": Label.FIRST,
    "first": Label.FIRST,
    "1": Label.SECOND,
    "second": Label.SECOND,
    "-1": Label.NONE,
    "none": Label.NONE,
}


def parse_human_label(text: str) -> Label | None:
    """Read a label cell: ``0``/``first``, ``1``/``second``, ``-1``/``none``; blank gives ``None``.

    Raises:
        UserError: Anything else.
    """
    word = text.strip().lower()
    if not word:
        return None
    if word not in _LABEL_WORDS:
        raise UserError(f"label {text!r} is not one of 0 (first), 1 (second), -1 (none), or blank to skip")
    return _LABEL_WORDS[word]


def human_key(source: StoredQuery) -> str:
    """Store key of the human label of a pair: goal and frames in order, nothing about the VLM.

    So one person's label of a pair is one row, whichever backend's row it was chosen from.
    """
    payload = {"labeler": HUMAN_LABELER, "goal": source.goal, "frames": [source.first_frame, source.second_frame]}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def human_row(source: StoredQuery, label: Label, note: str = "", created_at: float | None = None) -> StoredQuery:
    """The row holding a person's label of the pair in ``source``.

    Args:
        source: The row (usually a VLM answer) whose pair was relabelled.
        label: The person's label.
        note: Free text from the person, kept as the row's stage text.
        created_at: Timestamp (default now).
    """
    return StoredQuery(
        key=human_key(source),
        run_id=source.run_id,
        created_at=time.time() if created_at is None else created_at,
        labeler=HUMAN_LABELER,
        family=HUMAN_LABELER,
        model=None,
        identity={"family": HUMAN_LABELER},
        goal=source.goal,
        first_frame=source.first_frame,
        second_frame=source.second_frame,
        stages=(note,) if note else (),
        label=label,
        prob_second=None,
        abstain_reason=None,
        gt_label=source.gt_label,
        first_return=source.first_return,
        second_return=source.second_return,
        input_tokens=0,
        output_tokens=0,
        latency_s=0.0,
        cost_usd=0.0,
        attempts=1,
        status=STATUS_OK,
        error=None,
        meta={"relabels": source.key, "source_labeler": source.labeler, "source_label": int(source.label)},
    )


@dataclass(frozen=True)
class RelabelResult:
    """What ``relabel_from_csv`` did.

    Attributes:
        written: Human rows written (new or replacing an earlier human label of the pair).
        skipped: CSV rows with a blank label.
    """

    written: int
    skipped: int


def read_label_csv(path: str | os.PathLike[str]) -> list[tuple[str, Label | None, str]]:
    """Read ``(key, label or None for blank, note)`` from a relabelling CSV.

    Raises:
        UserError: The file is missing, lacks the ``key``/``label`` columns, or has a bad label.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            if not {"key", "label"} <= columns:
                raise UserError(f"{path}: a relabelling CSV needs a header with columns 'key' and 'label', got {sorted(columns)}")
            entries = []
            for line, record in enumerate(reader, start=2):
                try:
                    label = parse_human_label(record.get("label") or "")
                except UserError as exc:
                    raise UserError(f"{path}:{line}: {exc}") from None
                entries.append(((record.get("key") or "").strip(), label, (record.get("note") or "").strip()))
    except OSError as exc:
        raise UserError(f"cannot read relabelling CSV {path}: {exc}") from exc
    return entries


def relabel_from_csv(store: QueryStore, path: str | os.PathLike[str]) -> RelabelResult:
    """Store the labels of a CSV as human rows next to the rows they relabel.

    Every key is checked before anything is written, so a typo leaves the store unchanged.

    Raises:
        UserError: A key is unknown or names a human row, or the CSV is bad.
    """
    entries = read_label_csv(path)
    planned: list[StoredQuery] = []
    skipped = 0
    for key, label, note in entries:
        if label is None:
            skipped += 1
            continue
        source = store.get(key)
        if source is None:
            raise UserError(f"{path}: key {key!r} is not in the store {store.root}; nothing was written")
        if source.labeler == HUMAN_LABELER:
            raise UserError(f"{path}: key {key[:12]}... is itself a human label; give the key of the VLM's row")
        planned.append(human_row(source, label, note))
    for row in planned:
        store.put(row, replace=True)
    return RelabelResult(written=len(planned), skipped=skipped)


def human_labels(store: QueryStore, run_id: str | None = None) -> dict[tuple[str, str, str], StoredQuery]:
    """Human rows by ``(goal, first_frame, second_frame)``, to show beside the VLM's answers."""
    return {
        (row.goal, row.first_frame, row.second_frame): row
        for row in store.iter_queries(run_id=run_id, labeler=HUMAN_LABELER, status=STATUS_OK)
    }
