"""The anthropic backend against a local server speaking the Messages API wire format."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from rlvlmf.feedback.backends.anthropic import TOOL_MIN_TOKENS, AnthropicBackend
from rlvlmf.feedback.base import BackendError, Label
from rlvlmf.feedback.images import encode_png
from rlvlmf.testing import anthropic_server as fake
from rlvlmf.testing.chat_cases import label_one, random_pair
from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import FakeResponse

KEY = "sk-ant-api03-FAKE-test-key-0123456789"


@pytest.fixture
def server() -> Iterator[ScriptedJSONServer]:
    with fake.fake_anthropic_server() as server:
        yield server


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def _backend(server: ScriptedJSONServer, **options: str) -> AnthropicBackend:
    return AnthropicBackend.from_spec("claude-sonnet-4-5", server.url, timeout_s="5", **options)


def test_two_stage_query_on_the_wire(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    pair = random_pair(rng)
    answer = label_one(_backend(server), pair)
    assert answer.label == Label.SECOND and answer.abstain_reason is None
    assert answer.stages[1] == "1"
    assert (answer.input_tokens, answer.output_tokens) == (700 + 400, 60 + 30)
    assert answer.cost_usd == pytest.approx((1100 * 3.00 + 90 * 15.00) / 1e6)

    stage1, stage2 = server.requests
    assert stage1.path == "/v1/messages"
    assert stage1.headers["x-api-key"] == KEY and stage1.headers["anthropic-version"] == "2023-06-01"
    assert fake.images(stage1) == [encode_png(pair.first), encode_png(pair.second)]
    image_blocks = [b for b in stage1.body["messages"][0]["content"] if b["type"] == "image"]
    assert all(b["source"]["type"] == "base64" and b["source"]["media_type"] == "image/png" for b in image_blocks)
    assert stage1.body["model"] == "claude-sonnet-4-5" and stage1.body["max_tokens"] == 1024
    assert stage1.body["temperature"] == 0.0 and "tools" not in stage1.body
    assert stage2.body["tool_choice"] == {"type": "tool", "name": "answer"}
    schema = stage2.body["tools"][0]["input_schema"]
    assert schema["properties"]["answer"]["enum"] == ["0", "1", "-1"] and schema["required"] == ["answer"]
    assert stage2.body["max_tokens"] == TOOL_MIN_TOKENS, "a 16-token answer budget is too small for a tool call"
    assert not fake.images(stage2) and "Text:" in fake.request_text(stage2)


def test_plain_text_keeps_the_answer_token_budget(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    label_one(_backend(server, structured_output="false"), random_pair(rng))
    assert server.requests[1].body["max_tokens"] == 16


@pytest.mark.parametrize("stage", [0, 1])
def test_refusal_is_an_abstain(server: ScriptedJSONServer, rng: np.random.Generator, stage: int) -> None:
    if stage == 1:
        server.push(fake.default_responder)
    server.push(fake.refusal("I can't help with that."))
    answer = label_one(_backend(server), random_pair(rng))
    assert answer.label == Label.NONE and answer.abstain_reason == "refusal"
    assert len(answer.stages) == stage + 1 and server.count == stage + 1


def test_a_bad_tool_input_is_unparseable_not_a_label(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    server.push(fake.default_responder, fake.tool_reply({"choice": "image two"}))
    answer = label_one(_backend(server), random_pair(rng))
    assert answer.label == Label.NONE and answer.abstain_reason is not None
    assert "image two" in answer.stages[1]


def test_a_message_without_content_is_a_permanent_error(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    server.push(FakeResponse(200, b'{"type": "message", "id": "msg_1"}'))
    with pytest.raises(BackendError, match="no content"):
        label_one(_backend(server), random_pair(rng))


def test_key_and_url_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    gateway = AnthropicBackend.from_spec("claude-sonnet-4-5", "https://gw.example.com/anthropic/v1/")
    assert gateway.endpoint == "https://gw.example.com/anthropic/v1/messages" and gateway._api_key is None
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    official = AnthropicBackend.from_spec("claude-sonnet-4-5", None)
    assert official.endpoint == "https://api.anthropic.com/v1/messages"
