"""A local server speaking Gemini's ``generateContent`` REST format, for tests.

``POST /v1beta/models/{model}:generateContent``. By default it answers requests carrying
images with an analysis and text-only requests with a label (the bare enum value when the
request asks for ``text/x.enum``, ``{"answer": ...}`` for ``application/json``). Builders
give the other shapes a real Gemini API returns: prompt blocked, candidate stopped for
safety, no candidates, and Google's error body with its ``RetryInfo`` detail.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import ANALYSIS_TEXT, FakeResponse, RecordedRequest

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE"}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> FakeResponse:
    return FakeResponse(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


def usage(prompt_tokens: int = 100, output_tokens: int = 10, thoughts_tokens: int = 0) -> dict[str, int]:
    """A ``usageMetadata`` object."""
    meta = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens + thoughts_tokens}
    if thoughts_tokens:
        meta["thoughtsTokenCount"] = thoughts_tokens
    return meta


def reply(text: str, *, prompt_tokens: int = 100, output_tokens: int = 10, thoughts_tokens: int = 0,
          finish_reason: str = "STOP", thought: str | None = None, model_version: str = "gemini-fake-001") -> FakeResponse:
    """A successful response with one candidate (optionally preceded by a thought summary part)."""
    parts: list[dict[str, Any]] = [{"text": thought, "thought": True}] if thought else []
    parts.append({"text": text})
    return _json(200, {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish_reason, "index": 0}],
        "usageMetadata": usage(prompt_tokens, output_tokens, thoughts_tokens),
        "modelVersion": model_version,
        "responseId": "fake-response",
    })


def prompt_blocked(reason: str = "SAFETY") -> FakeResponse:
    """The prompt itself was blocked: no candidates, ``promptFeedback.blockReason``."""
    return _json(200, {"promptFeedback": {"blockReason": reason, "safetyRatings": []},
                       "usageMetadata": usage(80, 0), "modelVersion": "gemini-fake-001"})


def candidate_stopped(reason: str = "SAFETY") -> FakeResponse:
    """A candidate cut for safety/recitation/...: a finish reason and no content."""
    return _json(200, {
        "candidates": [{
            "finishReason": reason, "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}],
        }],
        "usageMetadata": usage(80, 0), "modelVersion": "gemini-fake-001",
    })


def no_candidates() -> FakeResponse:
    """A 200 with usage but neither candidates nor prompt feedback."""
    return _json(200, {"usageMetadata": usage(80, 0), "modelVersion": "gemini-fake-001"})


def error(status: int, message: str = "error", *, retry_delay: str | None = None, retry_after: str | None = None) -> FakeResponse:
    """Google's error body; ``retry_delay`` adds a ``google.rpc.RetryInfo`` detail (``"7s"``)."""
    body: dict[str, Any] = {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}
    if retry_delay is not None:
        body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
    return _json(status, body, {"Retry-After": retry_after} if retry_after is not None else None)


def inline_images(request: RecordedRequest) -> list[bytes]:
    """The decoded ``inline_data`` of every part of every content, in order."""
    images = []
    for content in (request.body or {}).get("contents", []):
        for part in content.get("parts", []):
            data = part.get("inline_data") or part.get("inlineData")
            if data:
                images.append(base64.b64decode(data["data"]))
    return images


def request_text(request: RecordedRequest) -> str:
    """All text parts of all contents, joined."""
    return "\n".join(part["text"] for content in (request.body or {}).get("contents", [])
                     for part in content.get("parts", []) if "text" in part)


def default_responder(request: RecordedRequest, label: str = "1") -> FakeResponse:
    """Analysis for requests with images, a label (in the asked-for format) otherwise."""
    if inline_images(request):
        return reply(ANALYSIS_TEXT, prompt_tokens=600, output_tokens=60)
    mime = (request.body or {}).get("generationConfig", {}).get("responseMimeType")
    text = json.dumps({"answer": label}) if mime == "application/json" else label
    return reply(text, prompt_tokens=150, output_tokens=2)


def fake_gemini_server(**kwargs: Any) -> ScriptedJSONServer:
    """A (not yet started) Gemini server; use it as a context manager."""
    kwargs.setdefault("responder", default_responder)
    return ScriptedJSONServer(route=":generateContent", **kwargs)
