"""The query store: every answer a backend ever gave, cheap to reuse and easy to inspect.

Layout of a store directory (default ``queries/``)::

    queries/
      queries.sqlite          one row per asked (backend, task, frame pair, order)
      frames/ab/abcdef....png each frame once, named by the hash of its pixels

**Keys.** A query's key is the SHA-256 of the canonical JSON of the backend's
``identity()`` (family, model, prompt version, decoding parameters), the task text the
backend reads (goal and phrases, or only the fields its ``task_fields`` names) and the two
frame hashes in order. A frame hash is the
SHA-256 of its shape and raw RGB bytes, not of its PNG bytes: PNG output depends on the
zlib build, and a hash that changed with it would silently turn a warm store cold. The PNG
written for a frame decodes to exactly those pixels, so the address can be re-checked.

**Safety.** SQLite runs in WAL mode with a busy timeout, so several processes and threads
may share one store. Each answer is its own committed transaction, written before the
labeler hands it on; a process killed mid-batch loses only the calls still in flight.
Frames are written (atomically) before the row that names them.

**Failed queries** are kept as rows with ``status='failed'`` and the error, so stats can
count them, but they are never returned as answers: the next run asks again, and its
answer replaces the failed row. An ``ok`` row is never overwritten unless asked to.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.base import Answer, FramePair, Label
from rlvlmf.feedback.images import decode_png, encode_png
from rlvlmf.feedback.summary import StoreStats, summarize
from rlvlmf.utils.hashing import canonical_json, frame_hash

DEFAULT_STORE_DIR = "queries"
DB_NAME = "queries.sqlite"
SCHEMA_VERSION = 1
STATUS_OK = "ok"
STATUS_FAILED = "failed"

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("key", "TEXT PRIMARY KEY"),
    ("run_id", "TEXT"),
    ("created_at", "REAL NOT NULL"),
    ("labeler", "TEXT NOT NULL"),
    ("family", "TEXT NOT NULL"),
    ("model", "TEXT"),
    ("identity", "TEXT NOT NULL"),
    ("goal", "TEXT NOT NULL"),
    ("first_frame", "TEXT NOT NULL"),
    ("second_frame", "TEXT NOT NULL"),
    ("stages", "TEXT NOT NULL"),
    ("label", "INTEGER NOT NULL"),
    ("prob_second", "REAL"),
    ("abstain_reason", "TEXT"),
    ("gt_label", "INTEGER"),
    ("first_return", "REAL"),
    ("second_return", "REAL"),
    ("input_tokens", "INTEGER NOT NULL"),
    ("output_tokens", "INTEGER NOT NULL"),
    ("latency_s", "REAL NOT NULL"),
    ("cost_usd", "REAL NOT NULL"),
    ("attempts", "INTEGER NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("error", "TEXT"),
    ("meta", "TEXT NOT NULL"),
)
_COLUMN_NAMES = tuple(name for name, _ in _COLUMNS)
_ANSWER_FIELDS = tuple(f.name for f in fields(Answer))
"""The ``Answer`` fields; a row keeps each in the column of the same name."""

_MISSING = object()

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queries ({", ".join(f"{name} {kind}" for name, kind in _COLUMNS)});
CREATE INDEX IF NOT EXISTS queries_run ON queries (run_id);
CREATE INDEX IF NOT EXISTS queries_labeler ON queries (labeler, status);
"""


# --------------------------------------------------------------------------- keys


DEFAULT_TASK_FIELDS: tuple[str, ...] = ("goal", "positive_phrases", "negative_phrases")
"""Task fields in the key unless a backend declares fewer with a ``task_fields`` class attribute.

Chat backends read only the goal sentence (``task_fields = ("goal",)`` keeps their rows warm
when phrases are edited); CLIP-style backends read the phrases too. The default assumes a
backend may read all of them, so an edit never returns a stale answer."""


def task_identity(task: TaskDescription, fields: Sequence[str] = DEFAULT_TASK_FIELDS) -> dict[str, Any]:
    """The fields of a task a backend can see, JSON-ready.

    Raises:
        ConfigError: A field name is not a ``TaskDescription`` field.
    """
    identity = {}
    for name in fields:
        value = getattr(task, name, _MISSING)
        if value is _MISSING:
            raise ConfigError(f"task_fields names {name!r}, which TaskDescription does not have")
        identity[name] = list(value) if isinstance(value, tuple) else value
    return identity


def query_key(
    identity: Mapping[str, Any],
    task: TaskDescription,
    first_hash: str,
    second_hash: str,
    task_fields: Sequence[str] = DEFAULT_TASK_FIELDS,
    pair_identity: Mapping[str, Any] | None = None,
) -> str:
    """Store key of one query: backend identity, task text and both frames, in order.

    Args:
        identity: ``Backend.identity()``.
        task: The task asked about.
        first_hash: ``frame_hash`` of the frame shown first.
        second_hash: ``frame_hash`` of the frame shown second.
        task_fields: The task fields the backend reads (its ``task_fields`` attribute).
        pair_identity: ``Backend.pair_identity(pair)``: what else the answer depends on (the
            scripted teacher's rewards); ``None`` leaves the key as it always was.

    Returns:
        Hex SHA-256 key.
    """
    payload: dict[str, Any] = {
        "backend": dict(identity), "task": task_identity(task, task_fields), "frames": [first_hash, second_hash],
    }
    if pair_identity is not None:
        payload["pair"] = dict(pair_identity)
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def ground_truth(pair: FramePair) -> tuple[Label | None, float | None, float | None]:
    """Ground-truth label and returns of a pair from its rewards.

    Returns:
        ``(label, first_return, second_return)``: the larger undiscounted return wins, equal
        returns give ``Label.NONE``; all three are ``None`` when the pair has no rewards.
    """
    if pair.first_rewards is None or pair.second_rewards is None:
        return None, None, None
    first = float(np.sum(pair.first_rewards))
    second = float(np.sum(pair.second_rewards))
    label = Label.SECOND if second > first else Label.FIRST if first > second else Label.NONE
    return label, first, second


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class StoredQuery:
    """One row of the store (see the module docstring for the meaning of each field)."""

    key: str
    run_id: str | None
    created_at: float
    labeler: str
    family: str
    model: str | None
    identity: dict[str, Any]
    goal: str
    first_frame: str
    second_frame: str
    stages: tuple[str, ...]
    label: Label
    prob_second: float | None
    abstain_reason: str | None
    gt_label: Label | None
    first_return: float | None
    second_return: float | None
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float
    attempts: int
    status: str
    error: str | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether this row holds an answer (not a failure)."""
        return self.status == STATUS_OK

    def answer(self) -> Answer:
        """The stored answer as the backend gave it."""
        values = {name: getattr(self, name) for name in _ANSWER_FIELDS}
        values["meta"] = dict(self.meta)
        return Answer(**values)

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> StoredQuery:
        values = dict(zip(_COLUMN_NAMES, row))
        values["identity"] = json.loads(values["identity"])
        values["stages"] = tuple(json.loads(values["stages"]))
        values["meta"] = json.loads(values["meta"])
        values["label"] = Label(values["label"])
        values["gt_label"] = None if values["gt_label"] is None else Label(values["gt_label"])
        return cls(**values)

    def _to_row(self) -> tuple[Any, ...]:
        values = {name: getattr(self, name) for name in _COLUMN_NAMES}
        values["identity"] = canonical_json(self.identity)
        values["stages"] = json.dumps(list(self.stages))
        values["meta"] = json.dumps(self.meta, sort_keys=True)
        values["label"] = int(self.label)
        values["gt_label"] = None if self.gt_label is None else int(self.gt_label)
        return tuple(values[name] for name in _COLUMN_NAMES)


@dataclass(frozen=True)
class RunUsage:
    """What one run has spent so far (rows it wrote, ok or failed)."""

    queries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def add(self, answer: Answer | None) -> RunUsage:
        """This usage and one more query: the answer's tokens and dollars, or none for a failed query (``None``)."""
        if answer is None:
            return replace(self, queries=self.queries + 1)
        return RunUsage(
            self.queries + 1,
            self.input_tokens + answer.input_tokens,
            self.output_tokens + answer.output_tokens,
            self.cost_usd + answer.cost_usd,
        )


# --------------------------------------------------------------------------- store


class QueryStore:
    """SQLite rows plus content-addressed PNG frames; safe to share across threads and processes."""

    def __init__(
        self, root: str | os.PathLike[str] = DEFAULT_STORE_DIR, *, create: bool = True, busy_timeout_s: float = 60.0
    ) -> None:
        """Open (and by default create) a store.

        Args:
            root: Store directory.
            create: Create the directory and database when missing; with ``False`` a missing
                store raises ``UserError``.
            busy_timeout_s: How long a write waits for another process's lock.

        Raises:
            UserError: The store is missing (``create=False``), unreadable, damaged, or from a
                newer rlvlmf; the message says how to recover.
        """
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.frames_dir = self.root / "frames"
        if not create and not self.db_path.exists():
            raise UserError(f"no query store at {self.root} (expected {self.db_path}); check --store")
        # SQLite takes an empty file for a new database, so a database truncated to zero bytes
        # would silently start over. Frames are written before the rows naming them: frames
        # beside an empty database mean rows were lost.
        if self.db_path.exists() and self.db_path.stat().st_size == 0 and any(self.frames_dir.glob("*/*.png")):
            raise UserError(
                f"query store {self.db_path} is empty (0 bytes) but {self.frames_dir} holds frames: its rows were "
                f"lost. To recover: restore {self.db_path} from a backup, or move it aside (mv {self.db_path} "
                f"{self.db_path}.bad) and re-run, which asks the backend again."
            )
        self._lock = threading.Lock()
        try:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.db_path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
            self._init_schema(busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"query store {self.db_path} is damaged or not an rlvlmf store ({exc}). To recover: move it "
                f"aside (mv {self.db_path} {self.db_path}.bad) and re-run, which asks the backend again; or "
                f"salvage rows with `sqlite3 {self.db_path}.bad .recover | sqlite3 {self.db_path}`. "
                f"Frames under {self.frames_dir} are kept either way."
            ) from exc
        except OSError as exc:
            raise UserError(f"cannot open query store {self.root}: {exc}") from exc

    def _init_schema(self, busy_timeout_s: float) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a killed process (not a power cut) without an fsync per commit.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # One statement at a time: executescript() would commit this transaction early.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise UserError(
                    f"query store {self.db_path} has schema version {row[0]}, newer than this rlvlmf supports "
                    f"({SCHEMA_VERSION}); upgrade rlvlmf or use another --store"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ----------------------------------------------------------------- frames

    def frame_path(self, digest: str) -> Path:
        """Where the frame with this hash lives."""
        return self.frames_dir / digest[:2] / f"{digest}.png"

    def put_frame(self, frame: np.ndarray, digest: str | None = None) -> str:
        """Write a frame unless it is already there.

        Args:
            frame: HxWx3 uint8 array.
            digest: Its ``frame_hash`` when already computed.

        Returns:
            The frame hash.
        """
        digest = digest or frame_hash(frame)
        path = self.frame_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader or a crash never sees half a PNG.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(encode_png(frame))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest

    def load_frame(self, digest: str) -> np.ndarray:
        """Read a stored frame back as an HxWx3 uint8 array.

        Raises:
            UserError: The frame file is missing.
        """
        path = self.frame_path(digest)
        try:
            return decode_png(path.read_bytes())
        except FileNotFoundError as exc:
            raise UserError(f"frame {digest} is missing from {self.frames_dir}; the store was copied incompletely") from exc

    # ----------------------------------------------------------------- rows

    def get(self, key: str) -> StoredQuery | None:
        """The row for a key (ok or failed), or ``None``."""
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_COLUMN_NAMES)} FROM queries WHERE key = ?", (key,)).fetchone()
        return None if row is None else StoredQuery._from_row(row)

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredQuery]:
        """Rows for many keys at once (missing keys are left out)."""
        found: dict[str, StoredQuery] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
            chunk = unique[start : start + 500]
            sql = f"SELECT {', '.join(_COLUMN_NAMES)} FROM queries WHERE key IN ({', '.join('?' for _ in chunk)})"
            with self._lock:
                rows = self._conn.execute(sql, chunk).fetchall()
            for row in rows:
                query = StoredQuery._from_row(row)
                found[query.key] = query
        return found

    def put(self, query: StoredQuery, *, replace: bool = False) -> bool:
        """Commit one row.

        A failed row never replaces an ok one; an ok row replaces a failed one; an ok row
        replaces an ok one only with ``replace=True`` (relabeling).

        Returns:
            Whether the row was written.
        """
        placeholders = ", ".join("?" for _ in _COLUMN_NAMES)
        updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMN_NAMES if name != "key")
        if replace:
            condition = "excluded.status = 'ok' OR queries.status = 'failed'"
        else:
            condition = "queries.status = 'failed'"
        sql = (
            f"INSERT INTO queries ({', '.join(_COLUMN_NAMES)}) VALUES ({placeholders}) "
            f"ON CONFLICT(key) DO UPDATE SET {updates} WHERE {condition}"
        )
        with self._lock:
            cursor = self._conn.execute(sql, query._to_row())  # autocommit: one transaction per answer
        return cursor.rowcount > 0

    def record(
        self,
        key: str,
        pair: FramePair,
        task: TaskDescription,
        identity: Mapping[str, Any],
        answer: Answer | None,
        *,
        run_id: str | None = None,
        labeler: str = "vlm",
        attempts: int = 1,
        error: str | None = None,
        frame_hashes: tuple[str, str] | None = None,
    ) -> StoredQuery:
        """Write a pair's frames and its answer (or its failure) and return the row.

        Args:
            key: ``query_key`` of the pair.
            pair: The pair as it was shown.
            task: The task asked about.
            identity: The backend's identity.
            answer: The answer, or ``None`` when the query failed.
            run_id: Run that paid for it.
            labeler: ``"vlm"`` for backends, ``"human"`` for people.
            attempts: Backend calls it took (1 + retries).
            error: Why it failed (with ``answer=None``).
            frame_hashes: The frames' hashes when already computed.
        """
        first_hash, second_hash = frame_hashes or (frame_hash(pair.first), frame_hash(pair.second))
        self.put_frame(pair.first, first_hash)
        self.put_frame(pair.second, second_hash)
        gt_label, first_return, second_return = ground_truth(pair)
        answer = answer or Answer(Label.NONE)
        query = StoredQuery(
            key=key,
            run_id=run_id,
            created_at=time.time(),
            labeler=labeler,
            family=str(identity.get("family", "")),
            model=None if identity.get("model") is None else str(identity["model"]),
            identity=dict(identity),
            goal=task.goal,
            first_frame=first_hash,
            second_frame=second_hash,
            stages=tuple(answer.stages),
            label=Label(answer.label),
            prob_second=answer.prob_second,
            abstain_reason=answer.abstain_reason,
            gt_label=gt_label,
            first_return=first_return,
            second_return=second_return,
            input_tokens=int(answer.input_tokens),
            output_tokens=int(answer.output_tokens),
            latency_s=float(answer.latency_s),
            cost_usd=float(answer.cost_usd),
            attempts=attempts,
            status=STATUS_OK if error is None else STATUS_FAILED,
            error=error,
            meta=dict(answer.meta),
        )
        self.put(query)
        return query

    def iter_queries(
        self, *, run_id: str | None = None, labeler: str | None = None, status: str | None = None
    ) -> Iterator[StoredQuery]:
        """Rows in insertion order, optionally filtered.

        The rows are read in one snapshot first, so writes while iterating are safe.
        """
        clauses, params = [], []
        for column, value in (("run_id", run_id), ("labeler", labeler), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(_COLUMN_NAMES)} FROM queries{where} ORDER BY rowid", params).fetchall()
        for row in rows:
            yield StoredQuery._from_row(row)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM queries").fetchone()[0])

    def run_usage(self, run_id: str) -> RunUsage:
        """Queries, tokens and dollars the rows of one run account for."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
                "COALESCE(SUM(cost_usd), 0) FROM queries WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        return RunUsage(int(row[0]), int(row[1]), int(row[2]), float(row[3]))

    def stats(self, run_id: str | None = None, labeler: str | None = None) -> StoreStats:
        """Counts, labels, abstains, ground-truth agreement, flips, tokens, cost and latency (see ``summarize``)."""
        return summarize(self.iter_queries(run_id=run_id, labeler=labeler))

    def close(self) -> None:
        """Close the database connection. Safe to call twice."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> QueryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
