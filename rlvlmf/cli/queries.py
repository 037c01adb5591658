"""``rlvlmf queries``: ask a backend about frame pairs, and inspect the query store.

Sub-commands are registered from ``SUBCOMMANDS``: each entry adds one sub-parser to the
``queries`` group and sets ``func``. To add one (``audit``, ``export``...), write a
``register_<name>(subparsers)`` function and append it to the tuple.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlvlmf.cli.audit import SUBCOMMANDS as AUDIT_SUBCOMMANDS
from rlvlmf.config import parse_options
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.base import FramePair
from rlvlmf.feedback.images import decode_png
from rlvlmf.feedback.labeler import LabeledQuery, Labeler, LabelerConfig
from rlvlmf.feedback.registry import make_backend
from rlvlmf.feedback.store import DEFAULT_STORE_DIR, QueryStore
from rlvlmf.feedback.summary import StoreStats


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--store DIR`` option every sub-command shares."""
    parser.add_argument("--store", default=DEFAULT_STORE_DIR, metavar="DIR", help="query store directory (default: %(default)s)")


# --------------------------------------------------------------------------- ask


def register_ask(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queries ask``."""
    parser = subparsers.add_parser(
        "ask",
        help="label image pairs with a backend",
        description="Label pairs of PNG frames (A B [C D ...], compared in order) through the labeler and "
        "query store; print one JSON object per pair: label is 0 (first better), 1 (second better) or -1 "
        "(no preference, abstain or failure). Try a backend here before a long run.",
    )
    parser.add_argument("--backend", required=True, metavar="SPEC", help="family[:model][@base_url], e.g. openai:gpt-4o")
    parser.add_argument("--goal", required=True, metavar="TEXT", help='goal sentence, e.g. "to open the drawer"')
    add_store_argument(parser)
    parser.add_argument("--no-store", action="store_true", help="neither read nor write the store")
    parser.add_argument("--offline", action="store_true", help="answer from the store only (misses fail)")
    parser.add_argument("--run", metavar="NAME", help="run id the answers are billed to (budgets count it)")
    parser.add_argument("--both-orders", action="store_true", help="ask each pair in both orders; disagreement = -1")
    parser.add_argument(
        "--max-in-flight", type=int, default=4, metavar="N", help="concurrent backend calls (default: %(default)s)"
    )
    parser.add_argument("--max-queries", type=int, metavar="N", help="stop after N backend queries in this run")
    parser.add_argument("--max-cost-usd", type=float, metavar="USD", help="stop once the run's estimated cost reaches this")
    parser.add_argument(
        "-o", "--option", action="append", metavar="KEY=VALUE",
        help="backend option (repeatable), e.g. -o temperature=0 -o seed=1",
    )
    parser.add_argument("images", nargs="+", metavar="PNG", help="frames, two per pair")
    parser.set_defaults(func=run_ask)


def _read_frame(path: str) -> Any:
    try:
        return decode_png(Path(path).read_bytes())
    except FileNotFoundError:
        raise UserError(f"image {path!r} does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read image {path!r}: {exc}") from None


def _result_json(first: str, second: str, result: LabeledQuery) -> dict[str, Any]:
    answer = result.answer
    return {
        "first": first,
        "second": second,
        "label": int(answer.label),
        "from_store": result.from_store,
        "failed": result.failed,
        "error": result.error,
        "abstain_reason": answer.abstain_reason,
        "prob_second": answer.prob_second,
        "stages": list(answer.stages),
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "cost_usd": answer.cost_usd,
        "latency_s": answer.latency_s,
        "key": result.key,
    }


def run_ask(args: argparse.Namespace) -> int:
    """Label the pairs; exit 1 when any pair failed."""
    if len(args.images) % 2:
        raise ConfigError(f"give images in pairs (A B [C D ...]); got {len(args.images)}")
    if args.no_store and args.offline:
        raise ConfigError("--offline answers from the store, so it cannot be combined with --no-store")
    task = TaskDescription(name="cli", goal=args.goal, positive_phrases=(args.goal,))
    paths = list(zip(args.images[0::2], args.images[1::2]))
    pairs = [FramePair(_read_frame(a), _read_frame(b)) for a, b in paths]
    config = LabelerConfig(
        max_in_flight=args.max_in_flight,
        max_queries=args.max_queries,
        max_cost_usd=args.max_cost_usd,
        offline=args.offline,
        both_orders=args.both_orders,
    )
    store = None if args.no_store else QueryStore(args.store)
    backend = make_backend(args.backend, **parse_options(args.option))
    with Labeler(backend, task, store, config, run_id=args.run) as labeler:
        results = labeler.label(pairs)
    for (first, second), result in zip(paths, results):
        print(json.dumps(_result_json(first, second, result)))
    return 1 if any(result.failed for result in results) else 0


# --------------------------------------------------------------------------- stats


def register_stats(subparsers: argparse._SubParsersAction) -> None:
    """Add ``queries stats``."""
    parser = subparsers.add_parser(
        "stats",
        help="summarise a query store",
        description="Counts, labels, abstains, failures, agreement with the ground-truth label, tokens, "
        "cost and latency percentiles of a query store, for one run or all.",
    )
    add_store_argument(parser)
    parser.add_argument("--run", metavar="NAME", help="only this run id")
    parser.add_argument("--labeler", metavar="NAME", help="only this labeler (vlm, human)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_stats)


def format_stats(stats: StoreStats) -> str:
    """Human-readable summary of ``StoreStats``."""
    labels = "  ".join(f"{label}: {count}" for label, count in sorted(stats.labels.items())) or "-"
    abstains = ", ".join(f"{reason}: {count}" for reason, count in sorted(stats.abstains.items())) or "-"
    agreement = (
        f"{stats.agreement:.3f} ({stats.agree}/{stats.with_gt} labeled queries with a ground-truth preference)"
        if stats.agreement is not None
        else "- (no labeled query with a ground-truth preference)"
    )
    latency = "  ".join(f"{name} {value:.3f} s" for name, value in stats.latency_s.items()) or "-"
    backends = ", ".join(f"{name}: {count}" for name, count in sorted(stats.by_backend.items())) or "-"
    lines = [
        f"queries    {stats.total} (ok {stats.ok}, failed {stats.failed})",
        f"labels     {labels}",
        f"abstains   {abstains}",
        f"agreement  {agreement}",
        f"tokens     in {stats.input_tokens}  out {stats.output_tokens}",
        f"cost       ${stats.cost_usd:.4f}",
        f"latency    {latency}",
        f"backends   {backends}",
    ]
    return "\n".join(lines)


def run_stats(args: argparse.Namespace) -> int:
    """Print the store summary."""
    with QueryStore(args.store, create=False) as store:
        stats = store.stats(run_id=args.run, labeler=args.labeler)
    if args.json:
        print(json.dumps(stats.to_dict()))
    else:
        print(format_stats(stats))
    return 0


# --------------------------------------------------------------------------- wiring

SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (register_ask, register_stats, *AUDIT_SUBCOMMANDS)
"""Registration functions of the ``queries`` sub-commands, in help order."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``queries`` command group."""
    parser = subparsers.add_parser(
        "queries",
        help="ask backends about frame pairs; inspect the query store",
        description="Preference queries and the query store.",
    )
    group = parser.add_subparsers(dest="queries_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(group)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
