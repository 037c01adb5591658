"""The contract every HTTP chat provider keeps, checked against each provider's local fake server.

Failures map to the same errors, the key is read once and never shown, a rejected structured
answer falls back to plain text for good, and the labeler retries and stores the same way, for
OpenAI-compatible servers, Gemini and Anthropic alike. What only one provider does (its wire
format, refusals, thinking, log-probabilities) is tested in its own file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.backends.anthropic import AnthropicBackend
from rlvlmf.feedback.backends.gemini import GeminiBackend
from rlvlmf.feedback.backends.openai import OpenAIBackend
from rlvlmf.feedback.base import BackendError, Label, TransientBackendError
from rlvlmf.feedback.http_chat import HttpChatBackend
from rlvlmf.feedback.labeler import Labeler, LabelerConfig
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing import anthropic_server, gemini_server, openai_server
from rlvlmf.testing.chat_cases import TASK, label_one, random_pair
from rlvlmf.testing.openai_server import FakeResponse, Responder, ScriptedServer

KEY_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY", "MY_KEY")


@dataclass(frozen=True)
class Provider:
    """One provider's fake server and the few facts the shared contract needs about it."""

    cls: type[HttpChatBackend]
    model: str
    key: str
    key_hint: str
    """What an auth error tells the user to check (the variables the key is read from)."""
    key_header: str
    key_value: Callable[[str], str]
    server: Callable[..., AbstractContextManager[ScriptedServer]]
    responder: Responder
    error: Callable[..., FakeResponse]
    """``error(status, message, retry_after=None)`` in the provider's error format."""
    rejects_structured: str
    """The text of a 400 saying the server does not do this provider's structured answers."""
    structured: Callable[[Any], bool]
    """Whether a request body asks for a structured answer."""

    def backend(self, server: ScriptedServer, **options: Any) -> HttpChatBackend:
        return self.cls.from_spec(self.model, server.url, timeout_s="5", **options)


PROVIDERS = {
    "openai": Provider(
        OpenAIBackend, "fake-vlm", "sk-test-DO-NOT-LEAK-0123456789abcdef", "OPENAI_API_KEY", "authorization",
        lambda key: f"Bearer {key}", openai_server.FakeOpenAIServer, openai_server.default_responder,
        FakeResponse.error, "response_format json_schema is not supported",
        lambda body: "response_format" in body),
    "gemini": Provider(
        GeminiBackend, "gemini-2.5-flash", "AIzaFAKE-test-key-0123456789abcdef", "GEMINI_API_KEY or GOOGLE_API_KEY",
        "x-goog-api-key", lambda key: key, gemini_server.fake_gemini_server, gemini_server.default_responder,
        gemini_server.error, "Invalid JSON payload: unknown field responseSchema",
        lambda body: "responseSchema" in body["generationConfig"]),
    "anthropic": Provider(
        AnthropicBackend, "claude-sonnet-4-5", "sk-ant-api03-FAKE-test-key-0123456789", "ANTHROPIC_API_KEY", "x-api-key",
        lambda key: key, anthropic_server.fake_anthropic_server, anthropic_server.default_responder,
        anthropic_server.error, "tools: this model does not support tool use",
        lambda body: "tools" in body),
}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Provider:
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    return PROVIDERS[request.param]


@pytest.fixture
def server(provider: Provider) -> Iterator[ScriptedServer]:
    with provider.server() as server:
        yield server


@pytest.fixture
def keyed(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> str:
    """The provider's key, set in its (first) default variable."""
    monkeypatch.setenv(provider.key_hint.split(" or ")[0], provider.key)
    return provider.key


def failure(backend: HttpChatBackend, rng: np.random.Generator) -> BackendError:
    with pytest.raises(BackendError) as info:
        label_one(backend, random_pair(rng))
    return info.value


# --- failures map to the same errors -----------------------------------------------------------


def test_rate_limit_is_transient_with_the_servers_delay(provider: Provider, server: ScriptedServer,
                                                         rng: np.random.Generator) -> None:
    server.push(provider.error(429, "Rate limit reached", retry_after="7"))
    error = failure(provider.backend(server), rng)
    assert isinstance(error, TransientBackendError) and error.retryable
    assert error.status == 429 and error.retry_after == 7.0 and "Rate limit reached" in str(error)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 529])
def test_server_errors_are_transient(provider: Provider, server: ScriptedServer, rng: np.random.Generator,
                                     status: int) -> None:
    server.push(provider.error(status, "The server had an error"))
    error = failure(provider.backend(server), rng)
    assert isinstance(error, TransientBackendError) and error.status == status and error.retry_after is None


def test_truncated_json_is_transient(provider: Provider, server: ScriptedServer, rng: np.random.Generator) -> None:
    # A body cut off on the way is worth a retry; the labeler bounds the retries.
    server.push(FakeResponse.malformed())
    error = failure(provider.backend(server), rng)
    assert isinstance(error, TransientBackendError) and "malformed JSON" in str(error)


def test_a_web_page_instead_of_json_is_a_permanent_error(provider: Provider, server: ScriptedServer,
                                                         rng: np.random.Generator) -> None:
    server.push(FakeResponse.not_json())
    error = failure(provider.backend(server), rng)
    assert not error.retryable and "not JSON" in str(error) and "base URL" in str(error)


def test_other_400s_are_not_mistaken_for_a_structured_output_rejection(provider: Provider, server: ScriptedServer,
                                                                       rng: np.random.Generator) -> None:
    server.push(provider.responder, provider.error(400, "context length exceeded"))
    error = failure(provider.backend(server), rng)
    assert not error.retryable and error.status == 400 and "context length exceeded" in str(error)
    assert server.count == 2


# --- the API key -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403])
def test_auth_errors_are_final_and_never_show_the_key(provider: Provider, server: ScriptedServer, keyed: str,
                                                      rng: np.random.Generator, status: int) -> None:
    server.push(provider.error(status, f"Incorrect API key provided: {keyed}. Also sk-proj-abc***************wxyz."))
    error = failure(provider.backend(server), rng)
    assert not error.retryable and error.status == status
    assert keyed not in str(error) and "sk-proj" not in str(error) and "[redacted]" in str(error)
    assert "Incorrect API key provided" in str(error)
    assert (f"check {provider.key_hint}" in str(error)) is (status != 400)


def test_key_is_read_at_construction_sent_in_its_header_and_never_shown(
    provider: Provider, server: ScriptedServer, keyed: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = provider.backend(server)
    monkeypatch.delenv(provider.key_hint.split(" or ")[0])  # read once, at construction
    answer = label_one(backend, random_pair(rng))
    assert answer.label is Label.SECOND
    assert {r.headers.get(provider.key_header) for r in server.requests} == {provider.key_value(keyed)}
    for text in (json.dumps(backend.identity()), json.dumps(answer.meta), repr(answer), repr(backend), str(vars(answer))):
        assert keyed not in text
    assert all(keyed not in r.raw.decode() and keyed not in r.path for r in server.requests)


def test_key_from_a_custom_variable(provider: Provider, server: ScriptedServer, rng: np.random.Generator,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "token-abc")
    label_one(provider.backend(server, api_key_env="MY_KEY"), random_pair(rng))
    assert server.requests[0].headers[provider.key_header] == provider.key_value("token-abc")


def test_a_server_of_your_own_without_a_key_gets_no_key_header(provider: Provider, server: ScriptedServer,
                                                               rng: np.random.Generator) -> None:
    label_one(provider.backend(server), random_pair(rng))
    assert all(provider.key_header not in r.headers for r in server.requests)


def test_the_providers_own_api_without_a_key_is_refused_at_construction(provider: Provider) -> None:
    with pytest.raises(ConfigError, match=f"set {provider.key_hint} to use https://"):
        provider.cls.from_spec(provider.model, None)


def test_bad_key_variable_names_and_urls_are_refused(provider: Provider) -> None:
    with pytest.raises(ConfigError, match="api_key_env 'not a name' is not an environment variable name"):
        provider.cls.from_spec(provider.model, "http://x/v1", api_key_env="not a name")
    with pytest.raises(ConfigError, match="must start with http:// or https://"):
        provider.cls.from_spec(provider.model, "localhost:8000/v1")


def test_identity_holds_no_key_url_or_timeout(provider: Provider, keyed: str) -> None:
    a = provider.cls.from_spec(provider.model, None, timeout_s=5)
    b = provider.cls.from_spec(provider.model, "http://other-host:1234/v1", timeout_s=50)
    assert a.identity() == b.identity() and a.identity()["family"] == provider.cls.family
    assert keyed not in json.dumps(a.identity())


# --- structured answers ------------------------------------------------------------------------


def test_plain_text_when_structured_output_is_off(provider: Provider, server: ScriptedServer,
                                                  rng: np.random.Generator) -> None:
    answer = label_one(provider.backend(server, structured_output="false"), random_pair(rng))
    assert answer.label is Label.SECOND and answer.stages[1] == "1" and answer.meta["calls"][1]["structured"] is False
    assert not any(provider.structured(r.body) for r in server.requests)


def test_rejected_structured_output_falls_back_to_plain_text_for_good(provider: Provider, server: ScriptedServer,
                                                                      rng: np.random.Generator) -> None:
    backend = provider.backend(server)
    server.push(provider.responder, provider.error(400, provider.rejects_structured))
    first = label_one(backend, random_pair(rng))
    second = label_one(backend, random_pair(rng))
    assert first.label is Label.SECOND and second.label is Label.SECOND
    assert first.meta["calls"][1]["structured"] is False
    # Pair 1: stage 1, rejected stage 2, plain stage 2. Pair 2: no more structured attempts.
    assert [provider.structured(r.body) for r in server.requests] == [False, True, False, False, False]


# --- through the labeler -----------------------------------------------------------------------


def test_labeler_honours_retry_after_then_stores(provider: Provider, server: ScriptedServer, rng: np.random.Generator,
                                                 tmp_path: Path) -> None:
    server.push(provider.error(529, "Overloaded"), provider.error(429, "slow down", retry_after="0.1"))
    labeler = Labeler(provider.backend(server), TASK, QueryStore(tmp_path / "q"),
                      LabelerConfig(backoff_base_s=0.01, progress=False), run_id="t", rng=rng)
    try:
        first = labeler.label([random_pair(np.random.default_rng(1))])[0]
        again = labeler.label([random_pair(np.random.default_rng(1))])[0]
    finally:
        labeler.close()
    assert first.label is Label.SECOND and not first.failed and server.count == 4
    assert again.from_store and server.count == 4

