"""``openai:MODEL[@URL]``: any server speaking the Chat Completions wire format.

One backend for OpenAI and the OpenAI-compatible servers (vLLM, SGLang, Ollama's ``/v1``,
llama.cpp's ``llama-server``). Images go as base64 PNG data URLs in ``image_url`` parts.

Base URL: the spec's ``@URL``, else ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.

API key: read from ``$OPENAI_API_KEY`` (or the variable named by the ``api_key_env``
option) when the backend is built, kept in memory only, sent as ``Authorization: Bearer``.
It is required for api.openai.com. Local servers usually need none: without a key no
Authorization header is sent at all (vLLM/SGLang started with ``--api-key`` need the key set
like for OpenAI).

Structured output: the label question is sent with ``response_format`` = a JSON schema
whose ``answer`` is an enum of the allowed labels (OpenAI, vLLM, SGLang, llama.cpp and
Ollama accept it). A server that rejects it (HTTP 400/422 naming ``response_format`` or the
schema) is asked in plain text from then on, for the life of the backend; the parser reads
both forms.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.base import BackendError
from rlvlmf.feedback.chat import ChatMessage, ChatReply, ChatRequest
from rlvlmf.feedback.http import ApiEndpoint
from rlvlmf.feedback.http_chat import HttpChatBackend, HttpChatOptions, json_field, usage_count

if TYPE_CHECKING:
    from typing_extensions import Unpack
from rlvlmf.feedback.images import to_data_url

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

# 8 pools of 32 connections: room for 256 requests in flight, short pool scans (see LoopLocalClient).
_CLIENT_SHARDS = 8
_CONNECTIONS_PER_SHARD = 32
_TOP_LOGPROBS = 5


ENDPOINT = ApiEndpoint(
    provider="openai",
    default_url=DEFAULT_BASE_URL,
    url_env=BASE_URL_ENV,
    url_example=" (e.g. http://localhost:8000/v1)",
    official_host="api.openai.com",
    key_env=(DEFAULT_KEY_ENV,),
    key_help="for a local OpenAI-compatible server, give its URL: openai:MODEL@http://localhost:8000/v1",
)


class OpenAIBackend(HttpChatBackend):
    """Chat Completions backend for OpenAI and OpenAI-compatible servers.

    Args:
        model: Model name as the server knows it (``gpt-4o``, ``Qwen/Qwen2.5-VL-7B-Instruct``).
        image_detail: OpenAI's image ``detail`` (``low``/``high``/``auto``); empty = server default.
        max_tokens_field: Request field for the token limit; empty = ``max_completion_tokens``
            for api.openai.com (its newer models reject ``max_tokens``), ``max_tokens`` elsewhere.
        logprobs: Ask for token log-probabilities on the label question and turn those of
            "0" and "1" into ``Answer.prob_second`` (OpenAI's non-reasoning models, vLLM,
            SGLang and llama.cpp return them; off by default as not every server does).
        **common: ``base_url`` (API root ending in ``/v1``; ``None`` -> ``$OPENAI_BASE_URL`` or
            OpenAI), ``protocol``, ``timeout_s``, ``structured_output`` (a JSON-schema
            ``response_format``) and ``api_key_env``; see ``HttpChatBackend``.

    Raises:
        ConfigError: No key for api.openai.com, or a bad option.
    """

    description = "Chat Completions API: OpenAI, or a compatible server (vLLM, SGLang, Ollama, llama.cpp) at @URL"
    api = ENDPOINT
    # A 400/422 naming one of these means the server does not do JSON-schema output.
    structured_rejected = re.compile(r"response_format|json_schema|schema|guided|grammar", re.IGNORECASE)
    structured_rejection_statuses = frozenset({400, 422})
    client_shards = _CLIENT_SHARDS
    connections_per_shard = _CONNECTIONS_PER_SHARD

    def __init__(
        self,
        model: str,
        *,
        image_detail: str = "",
        max_tokens_field: str = "",
        logprobs: bool = False,
        **common: Unpack[HttpChatOptions],
    ) -> None:
        if image_detail not in ("", "low", "high", "auto"):
            raise ConfigError(f"openai: image_detail {image_detail!r} is not valid; use low, high or auto")
        if max_tokens_field not in ("", "max_tokens", "max_completion_tokens"):
            raise ConfigError(
                f"openai: max_tokens_field {max_tokens_field!r} is not valid; use max_tokens or max_completion_tokens"
            )
        super().__init__(model, **common)
        self.image_detail = image_detail
        self.logprobs = logprobs
        default_field = "max_completion_tokens" if ENDPOINT.is_official(self.base_url) else "max_tokens"
        self.max_tokens_field = max_tokens_field or default_field

    def _endpoint(self, base_url: str) -> str:
        return f"{base_url}/chat/completions"

    def _key_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def _identity_extra(self) -> dict[str, Any]:
        return {"image_detail": self.image_detail} if self.image_detail else {}

    # --- one call ---------------------------------------------------------------------------

    async def asend(self, request: ChatRequest) -> ChatReply:
        choices = request.choices
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [self._message(m) for m in request.messages],
            "temperature": self.protocol.temperature,
            self.max_tokens_field: request.max_tokens,
        }
        structured = self._wants_structured(choices)
        if structured:
            payload["response_format"] = _choice_schema(choices or ())
        if choices and self.logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = _TOP_LOGPROBS
        data, structured = await self._post_structured(payload, structured, lambda p: p.pop("response_format"))
        reply = _reply(data)
        reply.meta["structured"] = structured
        if choices and self.logprobs:
            reply.choice_logprobs = _choice_logprobs(data["choices"][0].get("logprobs"), choices)
        return reply

    def _message(self, message: ChatMessage) -> dict[str, Any]:
        if all(isinstance(p, str) for p in message.parts):
            return {"role": message.role, "content": "\n".join(message.parts)}  # type: ignore[arg-type]
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, str):
                content.append({"type": "text", "text": part})
            else:
                image: dict[str, Any] = {"url": to_data_url(part)}
                if self.image_detail:
                    image["detail"] = self.image_detail
                content.append({"type": "image_url", "image_url": image})
        return {"role": message.role, "content": content}


def _choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """``response_format`` asking for ``{"answer": <one of choices>}``."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "preference",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "enum": list(choices)}},
                "required": ["answer"],
                "additionalProperties": False,
            },
        },
    }


def _reply(data: dict[str, Any]) -> ChatReply:
    """Read a Chat Completions response body.

    Raises:
        BackendError: The body has no choice with a message.
    """
    choices = data.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        raise BackendError(f"openai: response has no choices (keys: {sorted(data)[:10]})")
    choice = choices[0]
    message = json_field(choice, "message", dict)
    content = message.get("content")
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = content if isinstance(content, str) else ""
    finish = choice.get("finish_reason")
    refusal = message.get("refusal")
    if not (isinstance(refusal, str) and refusal.strip()):
        refusal = "content filter" if finish == "content_filter" and not text.strip() else None
    usage = json_field(data, "usage", dict)
    fields = (("model", data.get("model")), ("finish_reason", finish), ("system_fingerprint", data.get("system_fingerprint")))
    meta = {k: v for k, v in fields if isinstance(v, str)}
    return ChatReply(
        text=text,
        input_tokens=usage_count(usage.get("prompt_tokens")),
        output_tokens=usage_count(usage.get("completion_tokens")),
        refusal=refusal,
        meta=meta,
    )


def _choice_logprobs(logprobs: Any, choices: Sequence[str]) -> dict[str, float] | None:
    """Log-probabilities of the choices at the token where the answer starts.

    The answer token is the first generated token that is a choice or the start of one
    (``-`` of ``-1``), whether the reply is plain (``1``) or JSON (``{"answer":"1"}``). The
    alternatives at that position give each choice's log-probability; ``-1`` is read from
    its first token.
    """
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    firsts = {choice[:1] if choice.startswith("-") else choice: choice for choice in choices}
    for entry in content:
        if not isinstance(entry, dict) or _token(entry.get("token")) not in firsts:
            continue
        found: dict[str, float] = {}
        for alt in [entry, *(entry.get("top_logprobs") or [])]:
            if not isinstance(alt, dict):
                continue
            token, logprob = _token(alt.get("token")), alt.get("logprob")
            if token in firsts and isinstance(logprob, (int, float)) and firsts[token] not in found:
                found[firsts[token]] = float(logprob)
        return found or None
    return None


def _token(token: Any) -> str | None:
    return token.strip().strip('"') if isinstance(token, str) else None
