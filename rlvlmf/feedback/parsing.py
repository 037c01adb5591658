"""Reading a preference label out of a model's text, without ever guessing.

The answer must clearly be one of ``0`` (Image 1 better), ``1`` (Image 2 better) or ``-1``
(unsure / no difference). Accepted forms, each possibly wrapped in whitespace, quotes,
markdown emphasis, a code fence or a single HTML/XML tag, with an optional trailing period:

- a lone value: ``1``, ``"1"``, ``**-1**``, ``1.``;
- a JSON object with one label key: ``{"answer": "1"}``, ``{"label": 1}``;
- an answer line: ``Answer: 1``, ``Final answer = 0``, ``**Label:** -1``;
- in longer text, a lone value as its first or last line, and any answer lines.

When the text holds several of these they must all agree, else it is ``contradictory``;
anything else is ``unparseable``. Both are abstains: the caller keeps the raw text. A
sentence such as "Image 2 is better" is *not* read as a label: mapping prose to a label is
the guess the reference code made, turning its typos into -1.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from rlvlmf.feedback.base import Label

UNPARSEABLE = "unparseable"
"""Abstain reason: the text holds no clear label."""
CONTRADICTORY = "contradictory"
"""Abstain reason: the text gives different labels."""

_VALUES: dict[str, Label] = {"0": Label.FIRST, "1": Label.SECOND, "-1": Label.NONE}
_JSON_KEYS = frozenset({"answer", "label", "choice", "preference", "result", "output", "final_answer"})
# Answer lines are short; longer lines are skipped, which also bounds regex work on huge input.
_MAX_LINE = 200
_MAX_JSON = 10_000

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_DASHES = str.maketrans(dict.fromkeys("\u2212\u2010\u2011\u2012\u2013\u2014\ufe63", "-"))
_FENCE = re.compile(r"\A```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)\n?```\Z", re.DOTALL)
_TAG = re.compile(r"\A<([A-Za-z][\w-]{0,30})(?:\s[^<>]{0,100})?>(.{0,50})</\1>\Z", re.DOTALL)
_WRAP = "\"'`*_[](){}\u201c\u201d\u2018\u2019\u00ab\u00bb"
_VALUE = re.compile(r"-1|0|1")
_ANSWER_LINE = re.compile(
    r"(?:final[ \t]+)?(?:answer|label|choice|preference|output|result)"
    r"[ \t*_]*[:=](.*)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParsedLabel:
    """A parsed answer.

    Attributes:
        label: The label, ``Label.NONE`` both for an explicit ``-1`` and for an abstain.
        reason: ``None`` for a real answer (``-1`` included); ``"unparseable"`` or
            ``"contradictory"`` for an abstain.
    """

    label: Label
    reason: str | None = None


def parse_label(text: str) -> ParsedLabel:
    """Parse a model's answer into a label; never raises, never guesses.

    Args:
        text: The model's raw text (any size, any characters).

    Returns:
        The label, or ``Label.NONE`` with the abstain reason.
    """
    try:
        return _parse(text)
    except Exception:  # the parser must never take a labeling run down; keep the text instead
        return ParsedLabel(Label.NONE, UNPARSEABLE)


def _parse(text: str) -> ParsedLabel:
    if not isinstance(text, str):
        return ParsedLabel(Label.NONE, UNPARSEABLE)
    text = _normalise(text)
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        return ParsedLabel(Label.NONE, UNPARSEABLE)

    if text[0] in "{[" and len(text) <= _MAX_JSON:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            return _decide(_json_values(data))

    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found: list[Label] = []
    for index in {0, len(lines) - 1}:
        value = _lone_value(lines[index])
        if value is not None:
            found.append(value)
    for line in lines:
        value = _answer_line(line)
        if value is not None:
            found.append(value)
    return _decide(found)


def _normalise(text: str) -> str:
    # NFKC folds full-width digits and compatibility forms; dashes that mean "minus" become "-".
    return unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).translate(_DASHES).strip()


def _decide(found: list[Label]) -> ParsedLabel:
    distinct = set(found)
    if not distinct:
        return ParsedLabel(Label.NONE, UNPARSEABLE)
    if len(distinct) > 1:
        return ParsedLabel(Label.NONE, CONTRADICTORY)
    return ParsedLabel(distinct.pop())


def _lone_value(item: str) -> Label | None:
    """The label if ``item`` is nothing but a value in wrappers, else ``None``."""
    if len(item) > _MAX_LINE:
        return None
    item = item.strip()
    tagged = _TAG.match(item)
    if tagged:
        item = tagged.group(2)
    for _ in range(8):  # peel nested wrappers: **"1"**, `'1'`, [1] ...
        before = item
        # Markdown emphasis may be left unbalanced by the answer-line split ("**Answer:** 1").
        item = item.strip().strip("*_").strip().removesuffix(".").strip()
        if len(item) >= 2 and item[0] in _WRAP and item[-1] in _WRAP:
            item = item[1:-1]
        if item == before:
            break
    return _VALUES.get(item) if _VALUE.fullmatch(item) else None


def _answer_line(line: str) -> Label | None:
    """The label of an ``Answer: X`` line (any emphasis or bullets around it), else ``None``."""
    if len(line) > _MAX_LINE:
        return None
    line = line.lstrip("#>*-_ \t")
    match = _ANSWER_LINE.fullmatch(line)
    return _lone_value(match.group(1)) if match else None


def _json_values(data: dict) -> list[Label]:
    found: list[Label] = []
    for key, value in data.items():
        if not (isinstance(key, str) and key.strip().lower() in _JSON_KEYS):
            continue
        if type(value) is int and str(value) in _VALUES:  # not bool: True == 1 is no answer
            found.append(_VALUES[str(value)])
        elif isinstance(value, str):
            label = _lone_value(_normalise(value))
            if label is not None:
                found.append(label)
            else:  # a label key holding prose is not an answer; it must not be outvoted
                return []
    return found
