"""Export -> import round-trips every field and every frame, in JSON lines and Parquet."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.audit.export import export_store, import_file, read_records
from rlvlmf.errors import MissingDependencyError, UserError
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing.audit_store import build_store


def _assert_same_store(source: QueryStore, copy: QueryStore) -> None:
    rows = list(source.iter_queries())
    assert list(copy.iter_queries()) == rows  # dataclass equality: every field, identity and meta included
    for row in rows:
        for digest in (row.first_frame, row.second_frame):
            np.testing.assert_array_equal(copy.load_frame(digest), source.load_frame(digest))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("embed", [False, True])
def test_round_trip_every_field(tmp_path: Path, rng: np.random.Generator, fmt: str, embed: bool) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    store, _ = build_store(tmp_path / "src", rng)
    out = tmp_path / f"dataset.{fmt}"
    result = export_store(store, out, fmt, embed_frames=embed)
    assert result.records == len(store) == 10

    copy = QueryStore(tmp_path / "dst")
    imported = import_file(copy, out)
    assert (imported.written, imported.kept) == (10, 0)
    assert imported.frames == len({d for r in store.iter_queries() for d in (r.first_frame, r.second_frame)})
    _assert_same_store(store, copy)
    # Importing again keeps the 9 answers already there; a failed row may always be rewritten.
    again = import_file(copy, out)
    assert (again.written, again.kept) == (1, 9)
    _assert_same_store(store, copy)


def test_embedded_export_travels_without_the_store(tmp_path: Path, rng: np.random.Generator) -> None:
    store, _ = build_store(tmp_path / "src", rng)
    embedded, linked = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    export_store(store, embedded, embed_frames=True)
    export_store(store, linked)
    first = json.loads(linked.read_text().splitlines()[0])
    assert Path(first["first_frame_path"]).is_file() and "first_frame_png" not in first
    snapshot = list(store.iter_queries())
    store.close()
    shutil.rmtree(tmp_path / "src")  # the other machine has no copy of the store

    with pytest.raises(UserError, match="--embed-frames"):
        import_file(QueryStore(tmp_path / "x"), linked)
    copy = QueryStore(tmp_path / "y")
    import_file(copy, embedded)
    assert list(copy.iter_queries()) == snapshot


def test_tampered_frame_and_foreign_file_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    store, _ = build_store(tmp_path / "src", rng)
    out = tmp_path / "e.jsonl"
    export_store(store, out, embed_frames=True, run_id="run-1", labeler="vlm")
    records = list(read_records(out))
    other = list(read_records(out))[1]
    records[0]["first_frame_png"] = other["second_frame_png"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UserError, match="does not match its hash"):
        import_file(QueryStore(tmp_path / "dst"), out)

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(UserError, match="not an rlvlmf query export"):
        import_file(QueryStore(tmp_path / "dst2"), foreign)
    with pytest.raises(UserError, match="'jsonl' or 'parquet'"):
        export_store(store, tmp_path / "z", "csv")  # type: ignore[arg-type]


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = build_store(tmp_path / "src", rng)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"rlvlmf\[parquet\]"):
        export_store(store, tmp_path / "d.parquet", "parquet")
    assert not (tmp_path / "d.parquet").exists()
