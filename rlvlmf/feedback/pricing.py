"""Estimated dollar cost of hosted-model calls, from a small table of list prices.

Prices change; the table holds the providers' published per-token list prices (standard
tier, text and image input billed as input tokens) as of 2025 and is an estimate for
budgets, not an invoice. Models not in the table cost ``None`` ("unpriced"), which the
chat backends record as 0 with a note, so a dollar budget never silently counts them.
"""

from __future__ import annotations

import re

# USD per million tokens: (input, output).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "gemini-1.5-pro": (1.25, 5.00),
    "gemini-1.5-flash": (0.075, 0.30),
}

# What may follow a table name in a versioned model name: a date, "latest", a preview tag.
_VERSION_SUFFIX = re.compile(r"(?:\d[\w.-]*|latest|preview[\w.-]*|exp[\w.-]*)")


def price_of(model: str) -> tuple[float, float] | None:
    """Per-million-token (input, output) price of a model, or ``None`` if unknown.

    Matches the name exactly, or a table name followed by a version suffix
    (``gpt-4o-2024-08-06``, ``claude-sonnet-4-20250514``, ``gemini-2.5-flash-preview-05-20``),
    ignoring a leading ``models/`` or ``provider/`` path. ``gpt-4o-mini`` never matches
    ``gpt-4o``: the longest table name wins and the rest must look like a version.
    """
    name = model.strip().lower().rsplit("/", 1)[-1]
    best: str | None = None
    for key in PRICES_PER_MTOK:
        if name == key:
            return PRICES_PER_MTOK[key]
        if name.startswith(key + "-") and _VERSION_SUFFIX.fullmatch(name[len(key) + 1 :]):
            if best is None or len(key) > len(best):
                best = key
    return PRICES_PER_MTOK[best] if best is not None else None


def estimate_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated US-dollar cost of a call, or ``None`` when the model is not in the table.

    Args:
        model: The provider's model name.
        input_tokens: Prompt tokens billed (images included).
        output_tokens: Completion tokens billed.
    """
    price = price_of(model)
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
