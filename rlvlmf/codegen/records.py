"""Plain JSON records of code generation, one file per attempt, for audit and reuse.

Layout under a store root (the query store's directory)::

    <root>/codegen/<session_id>/session.json     task, backend identity, config, template version
    <root>/codegen/<session_id>/start.png         example frames shown to the model (if any)
    <root>/codegen/<session_id>/goal.png
    <root>/codegen/<session_id>/attempt-01.json   messages sent, reply, code, verification
    <root>/codegen/<session_id>/result.json       verdict and the verified program, if any

``load_program`` reads a verified program back by session id, for ``--reward code:<id>``.
Records hold prompts and answers only: never API keys, headers or URLs.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlvlmf.codegen.prompts import GeneratedProgram
from rlvlmf.errors import ConfigError, UnknownNameError
from rlvlmf.feedback.chat import ChatMessage

CODEGEN_DIR = "codegen"


def new_session_id(task_name: str) -> str:
    """A sortable, unique id: ``<UTC time>-<task>-<6 hex>``."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{task_name}-{uuid.uuid4().hex[:6]}"


def messages_record(messages: Sequence[ChatMessage], image_files: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """JSON form of messages: text verbatim, images as shape, SHA-1 and saved file name."""
    image_files = image_files or {}
    out = []
    for message in messages:
        parts: list[Any] = []
        for part in message.parts:
            if isinstance(part, str):
                parts.append(part)
            else:
                digest = hashlib.sha1(np.ascontiguousarray(part).data).hexdigest()
                parts.append({"image": {"shape": list(part.shape), "sha1": digest, "file": image_files.get(digest)}})
        out.append({"role": message.role, "parts": parts})
    return out


class CodegenRecorder:
    """Writes the records of one code-generation session.

    Args:
        root: Store root; records go to ``root/codegen/<session_id>/``.
        session_id: Id of the session (see ``new_session_id``).
    """

    def __init__(self, root: str | Path, session_id: str) -> None:
        self.session_id = session_id
        self.dir = Path(root) / CODEGEN_DIR / session_id
        self.dir.mkdir(parents=True, exist_ok=False)
        self.image_files: dict[str, str] = {}

    def save_frames(self, frames: dict[str, np.ndarray]) -> None:
        """Save example frames as PNG (``{"start": frame, "goal": frame}``)."""
        from PIL import Image  # noqa: PLC0415 - only needed when frames are shown

        for name, frame in frames.items():
            file = f"{name}.png"
            Image.fromarray(np.ascontiguousarray(frame)).save(self.dir / file)
            self.image_files[hashlib.sha1(np.ascontiguousarray(frame).data).hexdigest()] = file

    def save(self, name: str, record: dict[str, Any]) -> Path:
        """Write ``record`` as ``<name>.json`` in the session directory."""
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(record, indent=2, default=_jsonable))
        return path

    def save_program(self, program: GeneratedProgram) -> Path:
        """Write the verified code as ``program.py`` next to the records (easy to read)."""
        path = self.dir / "program.py"
        path.write_text(program.code)
        return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def list_sessions(root: str | Path) -> list[str]:
    """Session ids under ``root/codegen``, oldest first."""
    base = Path(root) / CODEGEN_DIR
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def load_program(source: str | Path, root: str | Path | None = None) -> GeneratedProgram:
    """A verified program, from a ``result.json`` / program JSON file or a session id.

    Args:
        source: A path to a JSON file written by ``rlvlmf codegen --out`` or a session's
            ``result.json``; or a session id looked up under ``root/codegen``.
        root: Store root for session ids.

    Raises:
        UnknownNameError: No such file or session (the known sessions are listed).
        ConfigError: The session's code did not pass verification.
    """
    path = Path(source)
    if not path.is_file():
        if root is None:
            raise UnknownNameError(f"no file {source!r}; give a codegen JSON file, or a session id with a store root")
        path = Path(root) / CODEGEN_DIR / str(source) / "result.json"
        if not path.is_file():
            known = ", ".join(list_sessions(root)[-10:]) or "none"
            raise UnknownNameError(f"no codegen session {source!r} under {root}; recent sessions: {known}")
    record = json.loads(path.read_text())
    program = record.get("program")
    if not record.get("passed") or not program:
        raise ConfigError(f"{path}: this code did not pass verification; run `rlvlmf codegen` again")
    return GeneratedProgram(code=program["code"], subgoals=tuple(program["subgoals"]), goal=program["goal"])
