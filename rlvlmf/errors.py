"""Errors that the CLI reports as one line, without a traceback.

Anything a user can fix (a typo in an env name, a missing key, a full budget) raises a
``UserError`` whose message says what is valid or what to do. Bugs raise anything else.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input or set-up; the message says how to fix it."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid (unknown key, wrong type, out of range)."""


class UnknownNameError(UserError, KeyError):
    """An unknown preset, env spec, backend or camera name.

    Subclasses ``KeyError`` so lookups read naturally, but prints like a normal message
    (``KeyError.__str__`` would add quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(UserError, ImportError):
    """An optional package or a system library is missing; the message names the install command."""


class BudgetExhausted(UserError):
    """A labeling budget (queries, tokens or dollars) was reached."""


def did_you_mean(name: str, names: Iterable[str], *, n: int = 5) -> str:
    """The hint an unknown-name message puts after its first sentence.

    Args:
        name: What the user typed.
        names: The valid names.
        n: Most suggestions.

    Returns:
        ``" Did you mean a, b?"`` with the valid names most like ``name`` (``difflib``, cutoff
        0.5), or ``""`` when none is close.
    """
    close = difflib.get_close_matches(name, list(names), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""
