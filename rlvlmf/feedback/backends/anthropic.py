"""``anthropic:MODEL[@URL]``: Anthropic's Messages API (Claude).

``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version: 2023-06-01``.
Images go as base64 PNG ``image`` blocks. The label question forces a call of a one-field
tool, ``answer``, whose input schema is an enum of the allowed labels; the tool input is
the answer. A server that rejects tools is asked in plain text from then on (the parser
reads both). ``stop_reason: refusal`` is recorded as an abstain.

Base URL: the spec's ``@URL`` (a proxy or gateway; ``/v1`` is added unless the URL already
ends with it), else ``https://api.anthropic.com``.

API key: ``$ANTHROPIC_API_KEY`` (or the variable named by ``api_key_env``), read when the
backend is built and kept in memory only. Required for api.anthropic.com; optional behind
a custom URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rlvlmf.feedback.base import BackendError
from rlvlmf.feedback.chat import ChatMessage, ChatReply, ChatRequest
from rlvlmf.feedback.http import ApiEndpoint
from rlvlmf.feedback.http_chat import HttpChatBackend, json_field, usage_count
from rlvlmf.feedback.images import to_base64_png

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
TOOL_NAME = "answer"

TOOL_MIN_TOKENS = 64
"""Token floor for a forced tool call: the call's JSON wrapper costs tokens beyond the
label itself, and a call cut off by ``max_tokens`` has no usable input."""



ENDPOINT = ApiEndpoint(
    provider="anthropic",
    default_url=DEFAULT_BASE_URL,
    official_host="api.anthropic.com",
    key_env=(DEFAULT_KEY_ENV,),
    key_help="keys: https://console.anthropic.com/settings/keys",
)


class AnthropicBackend(HttpChatBackend):
    """Anthropic Messages API backend.

    Args:
        model: Model name (``claude-sonnet-4-5``, ``claude-haiku-4-5-20251001``).
        **common: ``base_url`` (API root; ``None`` -> ``https://api.anthropic.com``), ``protocol``,
            ``timeout_s``, ``structured_output`` (a forced call of the ``answer`` tool) and
            ``api_key_env``; see ``HttpChatBackend``.

    Raises:
        ConfigError: No key for api.anthropic.com, or a bad option.
    """

    description = "Anthropic Messages API (base64 PNG image blocks, answers via a forced tool call); @URL for proxies"
    api = ENDPOINT
    structured_rejected = re.compile(r"tool", re.IGNORECASE)
    structured_kind = "the forced tool call"

    def _endpoint(self, base_url: str) -> str:
        return f"{base_url}/messages" if base_url.endswith("/v1") else f"{base_url}/v1/messages"

    def _headers(self) -> dict[str, str]:
        return {**super()._headers(), "anthropic-version": API_VERSION}

    def _key_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    async def asend(self, request: ChatRequest) -> ChatReply:
        messages, choices, max_tokens = request.messages, request.choices, request.max_tokens
        system = "\n".join(p for m in messages if m.role == "system" for p in m.parts if isinstance(p, str))
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.protocol.temperature,
            "messages": [_message(m) for m in messages if m.role != "system"],
        }
        if system:
            payload["system"] = system
        structured = self._wants_structured(choices)
        if structured:
            payload.update(_forced_tool(choices or ()))
            payload["max_tokens"] = max(max_tokens, TOOL_MIN_TOKENS)

        def to_plain(payload: dict[str, Any]) -> None:
            del payload["tools"], payload["tool_choice"]
            payload["max_tokens"] = max_tokens

        data, structured = await self._post_structured(payload, structured, to_plain)
        reply = parse_response(data)
        reply.meta["structured"] = structured
        return reply


def _message(message: ChatMessage) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, str):
            content.append({"type": "text", "text": part})
        else:
            source = {"type": "base64", "media_type": "image/png", "data": to_base64_png(part)}
            content.append({"type": "image", "source": source})
    return {"role": message.role, "content": content}


def _forced_tool(choices: Sequence[str]) -> dict[str, Any]:
    """``tools`` + ``tool_choice`` making the model answer ``{"answer": <one of choices>}``."""
    return {
        "tools": [{
            "name": TOOL_NAME,
            "description": "Record your final answer.",
            "input_schema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "enum": list(choices)}},
                "required": ["answer"],
            },
        }],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
    }


def parse_response(data: dict[str, Any]) -> ChatReply:
    """Read a Messages API response into a ``ChatReply``.

    The text is the forced tool's ``answer`` when the model called it, else the text blocks
    joined. ``stop_reason: refusal`` becomes a refusal.

    Raises:
        BackendError: The body is not a message (no ``content`` list).
    """
    content = data.get("content")
    if not isinstance(content, list):
        raise BackendError(f"anthropic: response has no content (keys: {sorted(data)[:10]})")
    usage = json_field(data, "usage", dict)
    input_keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    input_tokens = sum(usage_count(usage.get(k)) for k in input_keys)
    stop = data.get("stop_reason")
    meta = {k: v for k, v in (("model", data.get("model")), ("stop_reason", stop), ("id", data.get("id"))) if isinstance(v, str)}
    blocks = [b for b in content if isinstance(b, dict)]
    text = "".join(b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str))
    tool = next((b for b in blocks if b.get("type") == "tool_use" and b.get("name") == TOOL_NAME), None)
    if tool is not None:
        answer = tool.get("input", {}).get("answer") if isinstance(tool.get("input"), dict) else None
        # An input without a string answer is kept verbatim so the parser records it as unparseable.
        text = answer if isinstance(answer, str) else json.dumps(tool.get("input"))
    refusal = "refusal" if stop == "refusal" else None
    return ChatReply(text=text, input_tokens=input_tokens, output_tokens=usage_count(usage.get("output_tokens")),
                     refusal=refusal, meta=meta)
