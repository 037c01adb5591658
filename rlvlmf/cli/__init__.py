"""The ``rlvlmf`` command line.

Each sub-command lives in its own module under ``rlvlmf.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a handler taking the
parsed ``argparse.Namespace`` and returning an exit code. This module only wires them up.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rlvlmf import __version__
from rlvlmf.errors import UserError

# Sub-command modules, in the order `rlvlmf --help` lists them. Imported lazily by
# `build_parser` so `rlvlmf --help` stays fast and a broken optional module is isolated.
COMMAND_MODULES: tuple[str, ...] = (
    "rlvlmf.cli.envs",
    "rlvlmf.cli.backends",
    "rlvlmf.cli.queries",
    "rlvlmf.cli.train",
    "rlvlmf.cli.evaluate",
    "rlvlmf.cli.reward",
    "rlvlmf.cli.codegen",
    "rlvlmf.cli.sweep",
    "rlvlmf.cli.report",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="rlvlmf",
        description="Reinforcement learning from vision-language-model feedback.",
    )
    parser.add_argument("--version", action="version", version=f"rlvlmf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not written yet
                continue
            raise
        module.register(subparsers)
    _accept_verbose_anywhere(parser)
    return parser


def _accept_verbose_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``-v`` follow any sub-command too (``rlvlmf train -v``), as people type it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if "-v" not in sub._option_string_actions:
                    # SUPPRESS: when absent here, the value given (or not) before the sub-command stands.
                    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                     help="log debug messages")
                _accept_verbose_anywhere(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlvlmf`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own messages at INFO; third-party chatter (absl, OpenGL, httpx) only when it warns.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rlvlmf").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"rlvlmf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rlvlmf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
