"""HttpChatBackend: a provider that writes only its URL, key header and wire format gets the rest."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import pytest

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.backends.anthropic import AnthropicBackend
from rlvlmf.feedback.backends.gemini import GeminiBackend
from rlvlmf.feedback.backends.openai import OpenAIBackend
from rlvlmf.feedback.base import BackendError
from rlvlmf.feedback.chat import ChatBackend, ChatMessage, ChatOptions, ChatReply, ChatRequest
from rlvlmf.feedback.http import ApiEndpoint
from rlvlmf.feedback.http_chat import HttpChatBackend, HttpChatOptions, json_field, usage_count
from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import FakeResponse, RecordedRequest

KEY = "echo-secret-0123456789"


class EchoChat(HttpChatBackend):
    """The smallest HTTP chat provider: ``{"text": ...}`` in, ``{"text": ...}`` out."""

    api = ApiEndpoint(provider="echo", default_url="https://echo.invalid", official_host="echo.invalid",
                      key_help="ask the echo team", key_env=("ECHO_KEY",))
    client_shards = 3

    def _endpoint(self, base_url: str) -> str:
        return f"{base_url}/echo/{self.model}"

    def _key_headers(self, key: str) -> dict[str, str]:
        return {"x-echo-key": key}

    async def asend(self, request: ChatRequest) -> ChatReply:
        data = await self._post({"text": " ".join(str(p) for m in request.messages for p in m.parts)})
        return ChatReply(text=data["text"])


def _echo(request: RecordedRequest) -> FakeResponse:
    return FakeResponse(200, json.dumps({"text": request.body["text"]}).encode())


def _chat(backend: EchoChat, text: str) -> ChatReply:
    async def go() -> ChatReply:
        try:
            return await backend.achat([ChatMessage("user", (text,))])
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_a_provider_writes_only_its_url_key_header_and_wire_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_KEY", KEY)
    with ScriptedJSONServer(route="/echo/m1", responder=_echo) as server:
        backend = EchoChat("m1", base_url=server.url + "/")
        monkeypatch.delenv("ECHO_KEY")  # read once, when built
        assert backend.endpoint == f"{server.url}/echo/m1"
        assert _chat(backend, "hello").text == "hello"
        [request] = server.requests
        assert request.headers["x-echo-key"] == KEY and request.headers["user-agent"].startswith("rlvlmf/")

        server.push(FakeResponse.error(401, f"bad key {KEY}"))
        with pytest.raises(BackendError) as info:
            _chat(backend, "again")
    assert KEY not in str(info.value) and "[redacted]" in str(info.value) and "check ECHO_KEY" in str(info.value)
    assert KEY not in repr(backend) and KEY not in json.dumps(backend.identity())


def test_the_provider_api_refuses_to_run_keyless_and_a_gateway_sends_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHO_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"set ECHO_KEY to use https://echo.invalid \(ask the echo team\)"):
        EchoChat("m1")
    with ScriptedJSONServer(route="/echo/m1", responder=_echo) as server:
        _chat(EchoChat("m1", base_url=server.url), "hi")
        assert "x-echo-key" not in server.requests[0].headers
    with pytest.raises(ConfigError, match="http://"):
        EchoChat("m1", base_url="ftp://host")


def test_shards_share_one_tls_context() -> None:
    backend = EchoChat("m1", base_url="http://127.0.0.1:9")

    async def contexts() -> set[int]:
        clients = {id(backend._client.get()): backend._client.get() for _ in range(6)}
        assert len(clients) == 3
        found = {id(client._transport._pool._ssl_context) for client in clients.values()}  # type: ignore[attr-defined]
        await backend.aclose()
        return found

    assert len(asyncio.run(contexts())) == 1


@pytest.mark.parametrize("cls", [OpenAIBackend, GeminiBackend, AnthropicBackend])
def test_every_api_chat_backend_is_an_http_chat_backend(cls: type[Any]) -> None:
    assert issubclass(cls, HttpChatBackend) and cls.api.provider == cls.family and cls.api.key_env == cls.key_env


def test_the_endpoint_names_the_family_and_key_variables() -> None:
    assert (EchoChat.family, EchoChat.key_env) == ("echo", ("ECHO_KEY",))
    assert (GeminiBackend.family, GeminiBackend.key_env) == ("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"))


def test_the_official_host_covers_its_subdomains_only() -> None:
    assert EchoChat.api.is_official("https://echo.invalid/v1") and EchoChat.api.is_official("https://EU.echo.invalid")
    assert not EchoChat.api.is_official("https://notecho.invalid") and not EchoChat.api.is_official("http://127.0.0.1:9")


def test_json_field_gives_the_kind_asked_for_or_an_empty_one() -> None:
    data = {"usage": {"n": 1}, "parts": [1], "junk": "x", "null": None}
    assert json_field(data, "usage", dict) == {"n": 1} and json_field(data, "parts", list) == [1]
    assert [json_field(data, key, dict) for key in ("parts", "junk", "null", "absent")] == [{}, {}, {}, {}]
    assert json_field(data, "usage", list) == []


def test_usage_counts_are_non_negative_ints_or_zero() -> None:
    assert [usage_count(v) for v in (7, 0, -1, None, "12", 3.0, True)] == [7, 0, 0, 0, 0, 0, 0]


def test_the_common_option_types_name_the_base_keywords() -> None:
    # ChatOptions is what a subclass's **common may carry: exactly ChatBackend's own keywords.
    keywords = {p.name for p in inspect.signature(ChatBackend.__init__).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(ChatOptions.__annotations__) == keywords
    assert set(HttpChatOptions.__annotations__) == keywords | {"structured_output", "api_key_env"}


def test_from_spec_takes_the_common_keywords_through_a_subclass_that_passes_them_on() -> None:
    backend = OpenAIBackend.from_spec("m", "http://127.0.0.1:9/v1", timeout_s="3", structured_output="no", logprobs="yes")
    assert (backend.timeout_s, backend.structured_output, backend.logprobs) == (3.0, False, True)
    with pytest.raises(ConfigError, match=r"valid options: .*api_key_env.*image_detail.*structured_output.*timeout_s"):
        OpenAIBackend.from_spec("m", "http://127.0.0.1:9/v1", colour="red")
