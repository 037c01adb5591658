"""``gemini:MODEL[@URL]``: Google's Gemini API in its native ``generateContent`` REST format.

``POST {base}/v1beta/models/{model}:generateContent`` with the key in the
``x-goog-api-key`` header. Images go as ``inline_data`` PNG parts. The label question asks
for ``responseMimeType: text/x.enum`` with the allowed labels as a string enum, so the model
can only answer one of them; a server that rejects the schema is asked in plain text from
then on (the parser reads both).

Base URL: the spec's ``@URL`` (a proxy, gateway or regional endpoint; ``/v1beta`` is added
unless the URL already ends in an API version), else Google's endpoint.

API key: ``$GEMINI_API_KEY``, else ``$GOOGLE_API_KEY`` (or the variable named by
``api_key_env``), read when the backend is built and kept in memory only. Required for
Google's endpoint; optional behind a custom URL.

A blocked prompt (``promptFeedback.blockReason``), a candidate stopped for safety,
recitation or prohibited content, and a response without candidates become refusals:
the pair is recorded as an abstain with the reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.chat import ChatMessage, ChatReply, ChatRequest
from rlvlmf.feedback.http import ApiEndpoint
from rlvlmf.feedback.http_chat import HttpChatBackend, HttpChatOptions, json_field, usage_count

if TYPE_CHECKING:
    from typing_extensions import Unpack
from rlvlmf.feedback.images import to_base64_png

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

BLOCKING_FINISH_REASONS = frozenset(
    {"SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "LANGUAGE",
     "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}
)
"""Finish reasons that mean the model's answer was withheld, not just cut short."""

_API_VERSION = re.compile(r"/v\d+(?:alpha|beta)?\d*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


ENDPOINT = ApiEndpoint(
    provider="gemini",
    default_url=DEFAULT_BASE_URL,
    official_host="googleapis.com",
    key_env=KEY_ENVS,
    key_help="create a key at https://aistudio.google.com/apikey",
)


class GeminiBackend(HttpChatBackend):
    """Gemini ``generateContent`` backend.

    Args:
        model: Model name (``gemini-2.5-flash``); a leading ``models/`` is accepted.
        thinking_budget: Thinking tokens for 2.5-series models (``-1`` = the model's default,
            ``0`` = off where the model allows). Thinking is billed as output and counts
            against ``maxOutputTokens``, so a short answer budget may need it low.
        **common: ``base_url`` (API root; ``None`` -> Google's endpoint; ``/v1beta`` is appended
            unless it ends in an API version), ``protocol``, ``timeout_s``, ``structured_output``
            (an enum answer, ``text/x.enum``) and ``api_key_env`` (empty: ``GEMINI_API_KEY``, then
            ``GOOGLE_API_KEY``); see ``HttpChatBackend``.

    Raises:
        ConfigError: No key for Google's endpoint, or a bad option.
    """

    description = "Google Gemini generateContent API (inline PNG images, enum-constrained answers); @URL for proxies"
    api = ENDPOINT
    structured_rejected = re.compile(r"response_?schema|response_?mime_?type|responseSchema|responseMimeType|enum", re.IGNORECASE)
    structured_kind = "the enum response schema"

    def __init__(
        self,
        model: str,
        *,
        thinking_budget: int = -1,
        **common: Unpack[HttpChatOptions],
    ) -> None:
        if thinking_budget < -1:
            raise ConfigError(
                f"gemini: thinking_budget must be -1 (model default), 0 (off) or a token count, got {thinking_budget}"
            )
        model = model.strip().removeprefix("models/") if model else model
        super().__init__(model, **common)
        self.thinking_budget = thinking_budget

    def _endpoint(self, base_url: str) -> str:
        root = base_url if _API_VERSION.search(base_url) else f"{base_url}/v1beta"
        return f"{root}/models/{quote(self.model, safe='-._~')}:generateContent"

    def _key_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def _client_options(self) -> dict[str, Any]:
        return {"event_hooks": {"response": [_retry_info_as_header]}}

    def _identity_extra(self) -> dict[str, Any]:
        return {"thinking_budget": self.thinking_budget} if self.thinking_budget != -1 else {}

    async def asend(self, request: ChatRequest) -> ChatReply:
        messages, choices = request.messages, request.choices
        system = [m for m in messages if m.role == "system"]
        payload: dict[str, Any] = {"contents": [_content(m) for m in messages if m.role != "system"]}
        if system:
            payload["systemInstruction"] = {"parts": [_part(p) for m in system for p in m.parts]}
        # maxOutputTokens covers thinking too; a fixed thinking budget comes on top of the answer's.
        limit = request.max_tokens + max(self.thinking_budget, 0)
        config: dict[str, Any] = {"temperature": self.protocol.temperature, "maxOutputTokens": limit, "candidateCount": 1}
        if self.thinking_budget != -1:
            config["thinkingConfig"] = {"thinkingBudget": self.thinking_budget}
        structured = self._wants_structured(choices)
        if structured:
            config["responseMimeType"] = "text/x.enum"
            config["responseSchema"] = {"type": "STRING", "enum": list(choices or ())}
        payload["generationConfig"] = config
        data, structured = await self._post_structured(payload, structured, _without_schema)
        reply = parse_response(data)
        reply.meta["structured"] = structured
        return reply


def _without_schema(payload: dict[str, Any]) -> None:
    del payload["generationConfig"]["responseMimeType"], payload["generationConfig"]["responseSchema"]


def _part(part: str | Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"text": part}
    return {"inline_data": {"mime_type": "image/png", "data": to_base64_png(part)}}


def _content(message: ChatMessage) -> dict[str, Any]:
    return {"role": "model" if message.role == "assistant" else "user", "parts": [_part(p) for p in message.parts]}


def parse_response(data: dict[str, Any]) -> ChatReply:
    """Read a ``generateContent`` response body into a ``ChatReply``.

    Thought-summary parts are left out of the text; thinking tokens are billed as output.
    Blocked prompts, withheld candidates and empty responses become ``refusal``s.
    """
    usage = json_field(data, "usageMetadata", dict)
    input_tokens = usage_count(usage.get("promptTokenCount"))
    output_tokens = usage_count(usage.get("candidatesTokenCount")) + usage_count(usage.get("thoughtsTokenCount"))
    meta: dict[str, Any] = {k: data[k] for k in ("modelVersion", "responseId") if isinstance(data.get(k), str)}
    feedback = json_field(data, "promptFeedback", dict)
    candidates = json_field(data, "candidates", list)
    candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else None

    def refused(reason: str) -> ChatReply:
        return ChatReply(text="", input_tokens=input_tokens, output_tokens=output_tokens, refusal=reason, meta=meta)

    if feedback.get("blockReason"):
        meta["block_reason"] = feedback["blockReason"]
        return refused(f"prompt blocked: {feedback['blockReason']}")
    if candidate is None:
        return refused("no candidates")
    finish = candidate.get("finishReason")
    if isinstance(finish, str):
        meta["finish_reason"] = finish
    content = json_field(candidate, "content", dict)
    parts = json_field(content, "parts", list)
    text = "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought"))
    if finish in BLOCKING_FINISH_REASONS:
        return refused(f"finish reason {finish}")
    if finish == "MAX_TOKENS" and not text.strip() and usage_count(usage.get("thoughtsTokenCount")):
        return refused("thinking used the whole token budget (set thinking_budget=0 or a small budget, "
                       "or raise the max tokens)")
    return ChatReply(text=text, input_tokens=input_tokens, output_tokens=output_tokens, meta=meta)


async def _retry_info_as_header(response: httpx.Response) -> None:
    """Expose Google's ``RetryInfo.retryDelay`` (in the error body) as ``Retry-After``.

    Gemini says how long to back off on 429 inside the JSON error, not in a header; the
    shared error mapping reads the header, so the delay is copied there.
    """
    if response.status_code != 429 or "retry-after" in response.headers:
        return
    await response.aread()
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        match = _DURATION.match(delay) if isinstance(delay, str) else None
        if match:
            response.headers["Retry-After"] = match.group(1)
            return
