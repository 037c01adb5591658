"""How long the audit report and the export take, and how big they get, for a store of N pairs.

The store holds synthetic frames (smooth gradients plus mild noise, so PNGs compress like rendered
frames rather than like pure noise) of the size the VLM sees, with two-stage answers of a
realistic length. Prints wall time and output sizes.

    .venv/bin/python benchmarks/bench_audit.py [--pairs 1000] [--size 300] [--max-pairs 500] [--thumb 160]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rlvlmf.audit.export import export_store, import_file
from rlvlmf.audit.report import AuditConfig, write_audit_report
from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.base import Answer, FramePair, Label
from rlvlmf.feedback.store import QueryStore, frame_hash, query_key

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
IDENTITY = {"family": "bench", "model": "bench-vlm"}
STAGE_ONE = "Image 1 shows a drawer that is slightly open. Image 2 shows the drawer further open. " * 6


def _frame(rng: np.random.Generator, size: int) -> np.ndarray:
    ramp = np.linspace(0, 200, size)[None, :, None] * rng.uniform(0.3, 1.0, 3)
    return np.clip(ramp + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)


def build(root: Path, pairs: int, size: int, rng: np.random.Generator) -> QueryStore:
    store = QueryStore(root)
    for _ in range(pairs):
        returns = rng.uniform(0, 1, 2)
        pair = FramePair(_frame(rng, size), _frame(rng, size), returns[:1], returns[1:])
        label = Label(int(rng.choice([0, 1, -1], p=[0.45, 0.45, 0.1])))
        answer = Answer(label, None, (STAGE_ONE, str(int(label))), None, 1500, 120, float(rng.uniform(1, 4)), 0.002)
        key = query_key(IDENTITY, TASK, frame_hash(pair.first), frame_hash(pair.second))
        store.record(key, pair, TASK, IDENTITY, answer, run_id="bench")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--max-pairs", type=int, default=500)
    parser.add_argument("--thumb", type=int, default=160)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        store = build(root / "q", args.pairs, args.size, rng)
        print(f"store: {args.pairs} pairs of {args.size}x{args.size} frames built in {time.perf_counter() - start:.1f} s")
        for thumb_format in ("png", "jpeg"):
            start = time.perf_counter()
            config = AuditConfig(max_pairs=args.max_pairs, thumb_size=args.thumb, thumb_format=thumb_format)
            result = write_audit_report(store, root / "audit.html", config)
            seconds = time.perf_counter() - start
            mib = result.html_path.stat().st_size / 2**20
            print(f"audit report: {seconds:.2f} s, {mib:.1f} MiB HTML, {result.listed} pairs listed, "
                  f"{args.thumb}px {thumb_format} thumbnails")
        for fmt, embed in (("jsonl", False), ("jsonl", True), ("parquet", True)):
            out = root / f"export.{fmt}"
            start = time.perf_counter()
            try:
                export_store(store, out, fmt, embed_frames=embed)  # type: ignore[arg-type]
            except ImportError as exc:
                print(f"export {fmt}: skipped ({exc})")
                continue
            exported = time.perf_counter() - start
            start = time.perf_counter()
            with QueryStore(root / f"copy-{fmt}-{embed}") as copy:
                import_file(copy, out)
            imported = time.perf_counter() - start
            print(
                f"export {fmt} embed={embed}: {exported:.2f} s, {out.stat().st_size / 2**20:.1f} MiB; "
                f"import into an empty store {imported:.2f} s"
            )


if __name__ == "__main__":
    main()
