"""``rlvlmf backends``: which preference backends exist here, and what each needs."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from rlvlmf.feedback.registry import list_backends


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backends`` command."""
    parser = subparsers.add_parser(
        "backends",
        help="list preference backends",
        description="List backend families (built in and from the rlvlmf.backends entry points): "
        "whether each is usable here, the packages it needs and where its API key comes from. "
        "Use one with --backend FAMILY[:MODEL][@URL].",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per backend")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the backend table."""
    infos = list_backends()
    if args.json:
        for info in infos:
            print(json.dumps({**asdict(info), "key_set": {name: _is_set(name) for name in info.key_env}}))
        return 0
    rows = [
        (
            info.family,
            "yes" if info.installed else "no",
            ", ".join(info.requires) or "-",
            ", ".join(f"{name} ({'set' if _is_set(name) else 'not set'})" for name in info.key_env) or "-",
            info.description if info.installed else f"missing {', '.join(info.missing)}",
        )
        for info in infos
    ]
    header = ("family", "usable", "requires", "api key env", "description")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _is_set(name: str) -> bool:
    """Whether an API-key variable holds something; the value itself is never shown."""
    return bool(os.environ.get(name, "").strip())
