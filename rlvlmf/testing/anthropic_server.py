"""A local server speaking Anthropic's Messages API (``POST /v1/messages``), for tests.

By default it answers requests carrying images with an analysis, and text-only requests with
a label: as a ``tool_use`` block calling the forced tool when the request forces one, else
as text. Builders give the other shapes the real API returns: ``stop_reason: refusal``,
Anthropic's error body (``overloaded_error``, ``rate_limit_error``) with ``retry-after``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import ANALYSIS_TEXT, FakeResponse, RecordedRequest

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> FakeResponse:
    return FakeResponse(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


def message(content: list[dict[str, Any]], *, stop_reason: str = "end_turn", input_tokens: int = 100,
            output_tokens: int = 10, model: str = "claude-fake-20250101") -> FakeResponse:
    """A Messages API response with these content blocks."""
    return _json(200, {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    })


def text_reply(text: str, **kwargs: Any) -> FakeResponse:
    """A response with one text block."""
    return message([{"type": "text", "text": text}], **kwargs)


def tool_reply(tool_input: dict[str, Any], *, name: str = "answer", **kwargs: Any) -> FakeResponse:
    """A response whose only block calls a tool with this input."""
    kwargs.setdefault("stop_reason", "tool_use")
    return message([{"type": "tool_use", "id": "toolu_fake", "name": name, "input": tool_input}], **kwargs)


def refusal(text: str = "") -> FakeResponse:
    """The model declined (``stop_reason: refusal``), possibly after some text."""
    return message([{"type": "text", "text": text}] if text else [], stop_reason="refusal", output_tokens=3)


def error(status: int, message_text: str = "error", *, retry_after: str | None = None) -> FakeResponse:
    """Anthropic's error body, with a ``retry-after`` header when given."""
    body = {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message_text}}
    return _json(status, body, {"retry-after": retry_after} if retry_after is not None else None)


def images(request: RecordedRequest) -> list[bytes]:
    """The decoded base64 ``image`` blocks of every message, in order."""
    found = []
    for msg in (request.body or {}).get("messages", []):
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "image":
                found.append(base64.b64decode(block["source"]["data"]))
    return found


def request_text(request: RecordedRequest) -> str:
    """All text of all messages, joined."""
    texts = []
    for msg in (request.body or {}).get("messages", []):
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts += [b["text"] for b in content if b.get("type") == "text"]
    return "\n".join(texts)


def default_responder(request: RecordedRequest, label: str = "1") -> FakeResponse:
    """Analysis for requests with images; the label via the forced tool, or as text."""
    if images(request):
        return text_reply(ANALYSIS_TEXT, input_tokens=700, output_tokens=60)
    forced = (request.body or {}).get("tool_choice") or {}
    if forced.get("type") == "tool":
        return tool_reply({"answer": label}, name=forced["name"], input_tokens=400, output_tokens=30)
    return text_reply(label, input_tokens=150, output_tokens=2)


def fake_anthropic_server(**kwargs: Any) -> ScriptedJSONServer:
    """A (not yet started) Anthropic server; use it as a context manager."""
    kwargs.setdefault("responder", default_responder)
    return ScriptedJSONServer(route="/v1/messages", **kwargs)
