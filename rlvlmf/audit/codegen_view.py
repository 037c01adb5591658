"""The audit report's view of code-generation records (``rlvlmf.codegen.records``).

Sessions live in ``<store>/codegen/<session_id>/``: ``session.json`` (task, backend,
config), example frames (``*.png``), ``attempt-NN.json`` (messages, reply, code,
verification) and ``result.json`` (verdict). Loose ``<store>/codegen/*.json`` files are
shown as they are. Everything is HTML-escaped: prompts, replies and code are data.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvlmf.feedback.images import decode_png

CODEGEN_DIR = "codegen"
_FIELD_ORDER = ("task", "prompt", "messages", "reply", "answer", "refusal", "code", "error", "verification", "passed")
_OPEN_FIELDS = ("code", "verification", "error")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True, default=str)


def _messages_text(messages: Sequence[Any]) -> str:
    """Chat messages as plain text, images as a placeholder naming their file."""
    lines = []
    for message in messages:
        if not isinstance(message, dict):
            lines.append(_text(message))
            continue
        lines.append(f"[{message.get('role', '?')}]")
        for part in message.get("parts", ()):
            if isinstance(part, dict) and "image" in part:
                image = part["image"] or {}
                lines.append(f"<image {image.get('file') or image.get('sha1', '')} {image.get('shape', '')}>")
            else:
                lines.append(_text(part))
    return "\n".join(lines)


def _fields(record: Any) -> str:
    """Every field of a record, known ones first in reading order."""
    if not isinstance(record, dict):
        record = {"record": record}
    names = [n for n in _FIELD_ORDER if n in record] + sorted(n for n in record if n not in _FIELD_ORDER)
    parts = []
    for name in names:
        value = record[name]
        text = _messages_text(value) if name == "messages" and isinstance(value, list) else _text(value)
        opened = " open" if name in _OPEN_FIELDS else ""
        parts.append(f"<details{opened}><summary>{_e(name)}</summary><pre>{_e(text)}</pre></details>")
    return "".join(parts)


def _load(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{path.name}: unreadable ({exc})"


def _record_block(path: Path, title: str) -> str:
    record, error = _load(path)
    if error:
        return f"<details><summary>{_e(error)}</summary></details>"
    return f'<details class="codegen"><summary>{_e(title)}</summary><div class="info">{_fields(record)}</div></details>'


def _frame_images(directory: Path, width: int) -> str:
    figures = []
    for path in sorted(directory.glob("*.png")):
        try:
            decode_png(path.read_bytes())  # only real images get embedded
        except (OSError, ValueError):
            continue
        url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img alt="{_e(path.stem)}" width="{width}" src="{url}"><figcaption>{_e(path.stem)}</figcaption></figure>'
        )
    return f'<div class="frames">{"".join(figures)}</div>' if figures else ""


def _session_block(directory: Path, width: int) -> str:
    result, _ = _load(directory / "result.json")
    verdict = "running or interrupted"
    if isinstance(result, dict):
        verdict = f"{'passed' if result.get('passed') else 'failed'} after {result.get('attempts', '?')} attempt(s)"
    badge = "correct" if isinstance(result, dict) and result.get("passed") else "wrong"
    parts = [_frame_images(directory, width)]
    if (directory / "session.json").exists():
        parts.append(_record_block(directory / "session.json", "session: task, backend, config"))
    for attempt in sorted(directory.glob("attempt-*.json")):
        record, _ = _load(attempt)
        passed = isinstance(record, dict) and record.get("passed")
        parts.append(_record_block(attempt, f"{attempt.stem} ({'passed' if passed else 'failed'})"))
    if (directory / "result.json").exists():
        parts.append(_record_block(directory / "result.json", "result"))
    return (
        f'<details class="codegen"><summary><span class="badge {badge}">{_e(verdict)}</span> {_e(directory.name)}</summary>'
        f'<div class="info">{"".join(parts)}</div></details>'
    )


def codegen_section(store_root: Path, thumb_width: int = 160) -> str:
    """HTML of the code-generation records under a store, or ``""`` when there are none."""
    base = Path(store_root) / CODEGEN_DIR
    if not base.is_dir():
        return ""
    sessions = sorted(p for p in base.iterdir() if p.is_dir())
    loose = sorted(base.glob("*.json"))
    if not sessions and not loose:
        return ""
    blocks = [_session_block(s, thumb_width) for s in sessions] + [_record_block(p, p.name) for p in loose]
    return (
        f'<h2 id="codegen">Reward code generation</h2><p>{len(sessions)} session(s) and {len(loose)} loose record(s) '
        f"from {_e(base)}.</p>" + "".join(blocks)
    )
