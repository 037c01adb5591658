"""Export a query store as a preference dataset (JSON lines or Parquet) and import it back.

One record per stored row, carrying every column of the store plus the two frames, either
as paths to the store's PNG files or embedded as base64 PNG (``embed_frames``). Importing
puts each row back verbatim (same key, timestamps, answer text, costs), and each frame under
its content hash after checking that the pixels still hash to it.

Record fields: the ``StoredQuery`` fields (``label``/``gt_label`` as ints, ``identity`` and
``meta`` as objects, ``stages`` as a list), ``format`` (``EXPORT_FORMAT``), and per frame
``first_frame_path``/``second_frame_path`` or ``first_frame_png``/``second_frame_png``.
In Parquet, ``identity`` and ``meta`` are JSON strings and embedded frames raw PNG bytes.

Parquet needs ``pyarrow`` (the ``parquet`` extra).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlvlmf.errors import MissingDependencyError, UserError
from rlvlmf.feedback.base import Label
from rlvlmf.feedback.images import decode_png
from rlvlmf.feedback.store import QueryStore, StoredQuery, frame_hash
from rlvlmf.utils.atomic import atomic_open

ExportFormat = Literal["jsonl", "parquet"]
EXPORT_FORMAT = "rlvlmf-queries/1"
_FIELDS = tuple(f.name for f in dataclasses.fields(StoredQuery))
_SIDES = ("first", "second")
_PARQUET_MAGIC = b"PAR1"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingDependencyError(
            "Parquet export/import needs pyarrow: pip install 'rlvlmf[parquet]' (or pip install pyarrow), "
            "or use --format jsonl"
        ) from exc
    return pyarrow


# --------------------------------------------------------------------------- records


def to_record(row: StoredQuery, store: QueryStore, embed_frames: bool = False) -> dict[str, Any]:
    """One row as a JSON-ready record.

    Args:
        row: The stored row.
        store: Its store (for the frames).
        embed_frames: Embed the frames as base64 PNG instead of giving their paths.

    Raises:
        UserError: A frame to embed is missing from the store.
    """
    record: dict[str, Any] = {"format": EXPORT_FORMAT}
    for name in _FIELDS:
        record[name] = getattr(row, name)
    record["label"] = int(row.label)
    record["gt_label"] = None if row.gt_label is None else int(row.gt_label)
    record["stages"] = list(row.stages)
    for side in _SIDES:
        path = store.frame_path(getattr(row, f"{side}_frame"))
        if embed_frames:
            try:
                record[f"{side}_frame_png"] = base64.b64encode(path.read_bytes()).decode("ascii")
            except FileNotFoundError as exc:
                raise UserError(f"frame {path.name} of query {row.key[:12]}... is missing from {store.frames_dir}; copy the "
                                f"frames folder again from the original store, or export without --embed-frames") from exc
        else:
            record[f"{side}_frame_path"] = str(path.resolve())
    return record


def from_record(record: dict[str, Any]) -> StoredQuery:
    """The ``StoredQuery`` a record describes (frames are handled by ``import_records``).

    Raises:
        UserError: The record is not an rlvlmf query export or lacks a field.
    """
    if record.get("format") != EXPORT_FORMAT:
        raise UserError(f"not an rlvlmf query export record (format {record.get('format')!r}, expected {EXPORT_FORMAT!r})")
    missing = [name for name in _FIELDS if name not in record]
    if missing:
        raise UserError(f"query record {str(record.get('key'))[:12]}... lacks fields {missing}")
    values = {name: record[name] for name in _FIELDS}
    values["label"] = Label(int(values["label"]))
    values["gt_label"] = None if values["gt_label"] is None else Label(int(values["gt_label"]))
    values["stages"] = tuple(values["stages"])
    values["identity"] = dict(values["identity"])
    values["meta"] = dict(values["meta"])
    return StoredQuery(**values)


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    """Rows written by ``export_store``."""

    records: int
    path: Path


def export_store(
    store: QueryStore,
    out: str | os.PathLike[str],
    fmt: ExportFormat = "jsonl",
    *,
    embed_frames: bool = False,
    run_id: str | None = None,
    labeler: str | None = None,
) -> ExportResult:
    """Write the store's rows (optionally one run's or one labeler's) to a dataset file.

    Args:
        store: The store to export.
        out: File to write (replaced atomically).
        fmt: ``"jsonl"`` or ``"parquet"``.
        embed_frames: Embed frames as PNG instead of pointing at the store's files.
        run_id: Only rows of this run.
        labeler: Only rows of this labeler (``"vlm"``, ``"human"``).

    Raises:
        UserError: Unknown format, or a missing frame when embedding.
        MissingDependencyError: Parquet without pyarrow.
    """
    if fmt not in ("jsonl", "parquet"):
        raise UserError(f"export format must be 'jsonl' or 'parquet', got {fmt!r}")
    records = (to_record(row, store, embed_frames) for row in store.iter_queries(run_id=run_id, labeler=labeler))
    out = Path(out)
    count = _write_parquet(records, out) if fmt == "parquet" else _write_jsonl(records, out)
    os.chmod(out, 0o644)  # a dataset is made to be shared; atomic_open's temporary file is 0600
    return ExportResult(count, out)


def _write_jsonl(records: Iterable[dict[str, Any]], out: Path) -> int:
    count = 0
    with atomic_open(out, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, allow_nan=False) + "\n")
            count += 1
    return count


def _parquet_schema(pa: Any, embed_frames: bool) -> Any:
    frame_type = pa.binary() if embed_frames else pa.string()
    suffix = "png" if embed_frames else "path"
    types = {
        "format": pa.string(),
        "key": pa.string(),
        "run_id": pa.string(),
        "created_at": pa.float64(),
        "labeler": pa.string(),
        "family": pa.string(),
        "model": pa.string(),
        "identity": pa.string(),
        "goal": pa.string(),
        "first_frame": pa.string(),
        "second_frame": pa.string(),
        "stages": pa.list_(pa.string()),
        "label": pa.int8(),
        "prob_second": pa.float64(),
        "abstain_reason": pa.string(),
        "gt_label": pa.int8(),
        "first_return": pa.float64(),
        "second_return": pa.float64(),
        "input_tokens": pa.int64(),
        "output_tokens": pa.int64(),
        "latency_s": pa.float64(),
        "cost_usd": pa.float64(),
        "attempts": pa.int64(),
        "status": pa.string(),
        "error": pa.string(),
        "meta": pa.string(),
        f"first_frame_{suffix}": frame_type,
        f"second_frame_{suffix}": frame_type,
    }
    return pa.schema(list(types.items()))


def _write_parquet(records: Iterable[dict[str, Any]], out: Path) -> int:
    pa = _pyarrow()
    rows = []
    for record in records:
        record = dict(
            record, identity=json.dumps(record["identity"], sort_keys=True), meta=json.dumps(record["meta"], sort_keys=True)
        )
        for side in _SIDES:
            if f"{side}_frame_png" in record:
                record[f"{side}_frame_png"] = base64.b64decode(record[f"{side}_frame_png"])
        rows.append(record)
    embed = bool(rows) and "first_frame_png" in rows[0]
    table = pa.Table.from_pylist(rows, schema=_parquet_schema(pa, embed))
    with atomic_open(out, "wb") as handle:
        pa.parquet.write_table(table, handle)
    return len(rows)


# --------------------------------------------------------------------------- import


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Records of an export file (JSON lines or Parquet, told apart by content).

    Parquet records are converted to the JSON-lines form (objects, base64 frames).

    Raises:
        UserError: The file is missing or a line is not JSON.
        MissingDependencyError: A Parquet file without pyarrow.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UserError(f"cannot read query export {path}: {exc}") from exc
    if magic == _PARQUET_MAGIC:
        pa = _pyarrow()
        for record in pa.parquet.read_table(path).to_pylist():
            record["identity"] = json.loads(record["identity"])
            record["meta"] = json.loads(record["meta"])
            for side in _SIDES:
                if record.get(f"{side}_frame_png") is not None:
                    record[f"{side}_frame_png"] = base64.b64encode(record[f"{side}_frame_png"]).decode("ascii")
            yield record
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not a JSON line ({exc})") from exc


@dataclass(frozen=True)
class ImportResult:
    """What ``import_records`` did.

    Attributes:
        written: Rows written.
        kept: Rows already answered in the store and left as they were (without ``replace``).
        frames: Frames written (frames already in the store are not counted).
    """

    written: int
    kept: int
    frames: int


def _import_frame(store: QueryStore, record: dict[str, Any], side: str, base: Path) -> bool:
    """Put one frame of a record into the store; whether it had to be written."""
    digest = record[f"{side}_frame"]
    if store.frame_path(digest).exists():
        return False
    if record.get(f"{side}_frame_png") is not None:
        data = base64.b64decode(record[f"{side}_frame_png"])
        origin = f"embedded {side} frame of query {record['key'][:12]}..."
    elif record.get(f"{side}_frame_path") is not None:
        source = Path(record[f"{side}_frame_path"])
        source = source if source.is_absolute() else base / source
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise UserError(
                f"{side} frame of query {record['key'][:12]}... not found at {source} ({exc.strerror}); "
                "export with --embed-frames to move a dataset between machines"
            ) from exc
        origin = str(source)
    else:
        raise UserError(f"query {record['key'][:12]}... carries no {side} frame and the store has none")
    try:
        frame = decode_png(data)
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files
        raise UserError(f"{origin} is not a readable image ({exc})") from exc
    if frame_hash(frame) != digest:
        raise UserError(f"{origin} does not match its hash {digest[:12]}...: the file was changed or damaged")
    if data.startswith(_PNG_MAGIC):
        # Verified PNG bytes go in as they are: re-encoding costs more than the rest of the
        # import, and any PNG that decodes to the hashed pixels is a valid store frame.
        with atomic_open(store.frame_path(digest), "wb") as handle:
            handle.write(data)
    else:
        store.put_frame(frame, digest)
    return True


def import_records(
    store: QueryStore, records: Iterable[dict[str, Any]], *, base_dir: str | os.PathLike[str] = ".", replace: bool = False
) -> ImportResult:
    """Put exported records back into a store, each row verbatim.

    Args:
        store: Destination store.
        records: Records from ``read_records`` (or ``to_record``).
        base_dir: Directory that relative frame paths are relative to.
        replace: Overwrite rows the store already holds an answer for.

    Raises:
        UserError: A record is malformed, or a frame is missing or does not match its hash.
    """
    written = kept = frames = 0
    base = Path(base_dir)
    for record in records:
        row = from_record(record)
        for side in _SIDES:
            frames += _import_frame(store, record, side, base)
        if store.put(row, replace=replace):
            written += 1
        else:
            kept += 1
    return ImportResult(written, kept, frames)


def import_file(store: QueryStore, path: str | os.PathLike[str], *, replace: bool = False) -> ImportResult:
    """``import_records`` of an export file; relative frame paths are read beside it."""
    return import_records(store, read_records(path), base_dir=Path(path).parent, replace=replace)
