"""The audit sub-commands of ``rlvlmf queries``: audit, export, import, relabel.

``rlvlmf.cli.queries`` lists ``SUBCOMMANDS`` from here. Handlers import their modules when
they run, so building the parser (``rlvlmf --help``) does not load matplotlib or torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rlvlmf.feedback.store import DB_NAME, DEFAULT_STORE_DIR, QueryStore


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=DEFAULT_STORE_DIR, metavar="DIR", help="query store directory (default: %(default)s)")


# --------------------------------------------------------------------------- audit


def register_audit(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queries audit``."""
    parser = subparsers.add_parser(
        "audit",
        help="write an HTML audit report of the query store",
        description="Write one self-contained HTML file (open it from disk): summary, agreement with the "
        "ground truth by return gap, confusion table, and every pair with both frames and the model's text. "
        "Plots, stats.json and a relabelling CSV template go to <name>_files/ beside it.",
    )
    _store_argument(parser)
    parser.add_argument("--run", metavar="NAME", help="only this run id")
    parser.add_argument("--labeler", metavar="NAME", help="only this labeler (default: all but human)")
    parser.add_argument("--out", default="audit.html", metavar="PATH", help="HTML file to write (default: %(default)s)")
    parser.add_argument(
        "--max-pairs", type=int, default=500, metavar="N", help="list at most N pairs, wrong first (default: %(default)s)"
    )
    parser.add_argument(
        "--thumb-size", type=int, default=160, metavar="PX", help="longest side of frame thumbnails (default: %(default)s)"
    )
    parser.add_argument(
        "--thumb-format", choices=("png", "jpeg"), default="jpeg",
        help="thumbnail encoding: jpeg (about 10x smaller files) or png (exact pixels) (default: %(default)s)"
    )
    parser.add_argument("--bins", type=int, default=5, metavar="N", help="ground-truth gap bins (default: %(default)s)")
    parser.add_argument("--model", metavar="PATH", help="reward model: show saliency overlays of sample frames")
    parser.add_argument("--saliency-frames", type=int, default=6, metavar="N", help="frames with overlays (default: %(default)s)")
    parser.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    """Write the report and print where it is."""
    from rlvlmf.audit.report import AuditConfig, write_audit_report, write_codegen_report

    config = AuditConfig(
        run_id=args.run,
        labeler=args.labeler,
        max_pairs=args.max_pairs,
        thumb_size=args.thumb_size,
        thumb_format=args.thumb_format,
        num_bins=args.bins,
        saliency_frames=args.saliency_frames,
    )
    saliency = None
    if args.model:
        from rlvlmf.reward.ensemble import load_reward_model
        from rlvlmf.reward.saliency import overlay_fn

        saliency = overlay_fn(load_reward_model(args.model))
    if not (args.run or args.labeler) and _holds_no_queries(Path(args.store)):
        page = write_codegen_report(args.store, args.out, args.thumb_size)
        if page is not None:
            print(f"wrote {page} (no queries in {args.store}, only its code-generation sessions)")
            return 0
    with QueryStore(args.store, create=False) as store:
        result = write_audit_report(store, args.out, config, saliency)
    agreement = "-" if result.summary.agreement is None else f"{result.summary.agreement:.3f}"
    print(f"wrote {result.html_path} ({result.summary.total} queries, agreement {agreement}, {result.listed} pairs listed)")
    print(f"plots, stats.json and relabel.csv ({result.relabel_rows} pairs) in {result.files_dir}")
    return 0


def _holds_no_queries(root: Path) -> bool:
    """Whether a store folder has no query database, or one without rows (e.g. after ``rlvlmf codegen`` only)."""
    if not (root / DB_NAME).exists():
        return True
    with QueryStore(root, create=False) as store:
        return store.stats().total == 0


# --------------------------------------------------------------------------- export / import


def register_export(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queries export``."""
    parser = subparsers.add_parser(
        "export",
        help="export the query store as a preference dataset",
        description="Write one record per stored query (every field, plus the frames as paths or embedded "
        "PNG) as JSON lines or Parquet; `rlvlmf queries import` reads it back.",
    )
    _store_argument(parser)
    parser.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="file format (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="PATH", help="file to write")
    parser.add_argument("--embed-frames", action="store_true", help="embed frames as PNG (portable) instead of store paths")
    parser.add_argument("--run", metavar="NAME", help="only this run id")
    parser.add_argument("--labeler", metavar="NAME", help="only this labeler (vlm, human)")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export and print the record count."""
    from rlvlmf.audit.export import export_store

    with QueryStore(args.store, create=False) as store:
        result = export_store(store, args.out, args.format, embed_frames=args.embed_frames, run_id=args.run, labeler=args.labeler)
    print(f"wrote {result.records} records to {result.path}")
    return 0


def register_import(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queries import``."""
    parser = subparsers.add_parser(
        "import",
        help="import an exported preference dataset into a store",
        description="Read a file written by `rlvlmf queries export` (JSON lines or Parquet) into a store; "
        "each row keeps its key, text, labels and costs, and each frame is checked against its hash.",
    )
    _store_argument(parser)
    parser.add_argument("path", metavar="PATH", help="exported file")
    parser.add_argument("--replace", action="store_true", help="overwrite answers the store already holds")
    parser.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Import and print what was written."""
    from rlvlmf.audit.export import import_file

    with QueryStore(args.store) as store:
        result = import_file(store, Path(args.path), replace=args.replace)
    print(
        f"imported {result.written} queries ({result.kept} already in the store kept, {result.frames} new frames) "
        f"into {args.store}"
    )
    return 0


# --------------------------------------------------------------------------- relabel


def register_relabel(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queries relabel``."""
    parser = subparsers.add_parser(
        "relabel",
        help="store human labels from a CSV (key,label)",
        description="Read a CSV with columns key and label (0 = first better, 1 = second, -1 = none; blank "
        "skips; optional note) and store each as a 'human' labeler row beside the original answer, "
        "which is kept. `rlvlmf queries audit` writes a template.",
    )
    _store_argument(parser)
    parser.add_argument("--csv", required=True, metavar="FILE", help="CSV with columns key,label[,note]")
    parser.set_defaults(func=run_relabel)


def run_relabel(args: argparse.Namespace) -> int:
    """Store the human labels and print the counts."""
    from rlvlmf.audit.relabel import relabel_from_csv

    with QueryStore(args.store, create=False) as store:
        result = relabel_from_csv(store, args.csv)
    print(f"stored {result.written} human labels ({result.skipped} blank rows skipped) in {args.store}")
    return 0


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    register_audit,
    register_export,
    register_import,
    register_relabel,
)
"""Registration functions for ``rlvlmf.cli.queries``."""
