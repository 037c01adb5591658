"""The openai backend end to end against a real local Chat Completions server."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.feedback.backends.openai import OpenAIBackend
from rlvlmf.feedback.base import Answer, BackendError, FramePair, Label, TransientBackendError
from rlvlmf.feedback.chat import ProtocolConfig
from rlvlmf.feedback.http import parse_retry_after, redact
from rlvlmf.feedback.images import decode_png
from rlvlmf.feedback.pricing import estimate_cost
from rlvlmf.testing.openai_server import ANALYSIS_TEXT, FakeOpenAIServer, FakeResponse, serve

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from serve()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def pair(rng: np.random.Generator) -> FramePair:
    return FramePair(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))


def run(backend: OpenAIBackend, pairs: Sequence[FramePair]) -> list[Answer]:
    async def go() -> list[Answer]:
        try:
            return await backend.alabel(pairs, TASK)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def fail(backend: OpenAIBackend, pair: FramePair) -> BackendError:
    with pytest.raises(BackendError) as info:
        run(backend, [pair])
    return info.value


# --- the protocol over the wire ----------------------------------------------------------


def test_two_stage_end_to_end(server: FakeOpenAIServer, pair: FramePair) -> None:
    [answer] = run(OpenAIBackend("fake-vlm", base_url=server.url), [pair])
    assert answer.label is Label.SECOND and answer.abstain_reason is None
    assert answer.stages == (ANALYSIS_TEXT, '{"answer": "1"}')
    assert (answer.input_tokens, answer.output_tokens) == (900 + 150, 60 + 5)
    assert answer.cost_usd == 0.0 and answer.meta["unpriced"] is True
    assert [call["model"] for call in answer.meta["calls"]] == ["fake-vlm", "fake-vlm"]

    stage1, stage2 = server.chat_requests()
    # Stage 1: both frames as PNG data URLs, in order, with the goal in the text.
    urls = stage1.image_urls()
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    import base64

    np.testing.assert_array_equal(decode_png(base64.b64decode(urls[0].split(",", 1)[1])), pair.first)
    np.testing.assert_array_equal(decode_png(base64.b64decode(urls[1].split(",", 1)[1])), pair.second)
    assert "The goal is to open the drawer." in stage1.text()
    assert "response_format" not in stage1.body
    assert stage1.body["model"] == "fake-vlm" and stage1.body["temperature"] == 0.0
    assert stage1.body["max_tokens"] == ProtocolConfig().analysis_max_tokens
    # Stage 2: text only, the analysis inside, structured output with the label enum.
    assert not stage2.has_images and isinstance(stage2.body["messages"][0]["content"], str)
    assert ANALYSIS_TEXT in stage2.text()
    schema = stage2.body["response_format"]
    assert schema["type"] == "json_schema"
    assert schema["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["0", "1", "-1"]
    assert stage2.body["max_tokens"] == ProtocolConfig().answer_max_tokens


def test_one_stage_end_to_end(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.reply("Image 1 has the drawer open.\nAnswer: 0"))
    [answer] = run(OpenAIBackend("fake-vlm", base_url=server.url, protocol=ProtocolConfig(mode="one-stage")), [pair])
    assert answer.label is Label.FIRST and len(answer.stages) == 1
    [request] = server.chat_requests()
    assert len(request.image_urls()) == 2 and "Answer: -1" in request.text()


def test_composite_sends_one_image(server: FakeOpenAIServer, pair: FramePair) -> None:
    run(OpenAIBackend("fake-vlm", base_url=server.url, protocol=ProtocolConfig(composite=True)), [pair])
    assert len(server.chat_requests()[0].image_urls()) == 1


def test_priced_model_gets_a_cost(server: FakeOpenAIServer, pair: FramePair) -> None:
    [answer] = run(OpenAIBackend("gpt-4o", base_url=server.url), [pair])
    assert answer.cost_usd == pytest.approx(estimate_cost("gpt-4o", 1050, 65))


def test_garbage_answer_abstains_with_the_raw_text(server: FakeOpenAIServer, pair: FramePair) -> None:
    garbage = "I'd rather talk about ducks. 🦆 <div>0 1 -1</div>"
    server.push(FakeResponse.reply("analysis"), FakeResponse.reply(garbage))
    [answer] = run(OpenAIBackend("fake-vlm", base_url=server.url), [pair])
    assert answer.label is Label.NONE and answer.abstain_reason == "unparseable"
    assert answer.stages == ("analysis", garbage)


def test_refusal_becomes_an_abstain(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.reply(None, refusal="I can't help with that."))
    [answer] = run(OpenAIBackend("fake-vlm", base_url=server.url), [pair])
    assert answer.label is Label.NONE and answer.abstain_reason == "I can't help with that."
    assert server.count == 1


def test_content_filter_becomes_an_abstain(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.reply(None, finish_reason="content_filter"))
    [answer] = run(OpenAIBackend("fake-vlm", base_url=server.url), [pair])
    assert answer.abstain_reason == "content filter"


def test_pairs_of_one_call_run_concurrently(pair: FramePair) -> None:
    with FakeOpenAIServer(delay_s=0.2) as server:
        answers = run(OpenAIBackend("fake-vlm", base_url=server.url), [pair] * 16)
        assert server.max_in_flight == 16
    assert [a.label for a in answers] == [Label.SECOND] * 16


def test_backend_survives_successive_event_loops(server: FakeOpenAIServer, pair: FramePair) -> None:
    backend = OpenAIBackend("fake-vlm", base_url=server.url)
    for _ in range(3):  # a caller using asyncio.run per batch
        assert asyncio.run(backend.alabel([pair], TASK))[0].label is Label.SECOND
    asyncio.run(backend.aclose())
    assert server.count == 6


# --- failures ----------------------------------------------------------------------------


def test_429_with_retry_after_date(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.error(429, "slow down", retry_after=email.utils.formatdate(time.time() + 30, usegmt=True)))
    error = fail(OpenAIBackend("fake-vlm", base_url=server.url), pair)
    assert isinstance(error, TransientBackendError) and 25 <= error.retry_after <= 31


def test_429_without_retry_after(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.error(429, "slow down"))
    error = fail(OpenAIBackend("fake-vlm", base_url=server.url), pair)
    assert isinstance(error, TransientBackendError) and error.retry_after is None


def test_retry_after_ms_header_wins(server: FakeOpenAIServer, pair: FramePair) -> None:
    response = FakeResponse.error(429, "slow down", retry_after="20")
    response.headers["retry-after-ms"] = "1500"
    server.push(response)
    assert fail(OpenAIBackend("fake-vlm", base_url=server.url), pair).retry_after == 1.5


def test_stalled_request_times_out_as_transient(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.stall(10))
    start = time.perf_counter()
    error = fail(OpenAIBackend("fake-vlm", base_url=server.url, timeout_s=0.3), pair)
    assert isinstance(error, TransientBackendError) and "timed out" in str(error)
    assert time.perf_counter() - start < 5


def test_connection_closed_mid_body_is_transient(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse.drop())
    error = fail(OpenAIBackend("fake-vlm", base_url=server.url), pair)
    assert isinstance(error, TransientBackendError) and "connection" in str(error)


def test_refused_connection_is_transient(pair: FramePair) -> None:
    with FakeOpenAIServer() as server:
        url = server.url
    error = fail(OpenAIBackend("fake-vlm", base_url=url), pair)
    assert isinstance(error, TransientBackendError)


def test_json_without_choices_is_a_permanent_error(server: FakeOpenAIServer, pair: FramePair) -> None:
    server.push(FakeResponse(200, b'{"object": "chat.completion", "choices": []}'))
    error = fail(OpenAIBackend("fake-vlm", base_url=server.url), pair)
    assert not error.retryable and "no choices" in str(error)


def test_wrong_path_gives_a_clear_permanent_error(server: FakeOpenAIServer, pair: FramePair) -> None:
    error = fail(OpenAIBackend("fake-vlm", base_url=server.url.removesuffix("/v1") + "/api"), pair)
    assert not error.retryable and error.status == 404


# --- the API key -------------------------------------------------------------------------


def test_openai_itself_gets_the_newer_token_limit_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert OpenAIBackend("gpt-4o").max_tokens_field == "max_completion_tokens"


# --- configuration -----------------------------------------------------------------------


def test_base_url_from_environment(server: FakeOpenAIServer, pair: FramePair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/")
    backend = OpenAIBackend("fake-vlm")
    assert backend.base_url == server.url and backend.max_tokens_field == "max_tokens"
    run(backend, [pair])
    assert server.count == 2


def test_from_spec_options(server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend.from_spec("fake-vlm", server.url, mode="one-stage", structured_output="false",
                                      image_detail="low", timeout_s="3")
    assert backend.protocol.mode == "one-stage" and backend.structured_output is False and backend.timeout_s == 3.0
    assert backend.identity()["image_detail"] == "low"
    assert "image_detail" not in OpenAIBackend("fake-vlm", base_url=server.url).identity()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"base_url": "http://x/v1", "image_detail": "ultra"}, "low, high or auto"),
     ({"base_url": "http://x/v1", "max_tokens_field": "n_predict"}, "max_completion_tokens")],
)
def test_bad_options_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OpenAIBackend("fake-vlm", **kwargs)


# --- HTTP helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), (" 1.5 ", 1.5), ("-3", 0.0), ("", None), (None, None), ("soon", None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0), ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_redact_removes_secrets_and_key_shapes() -> None:
    text = redact("key sk-abcdef123456 and AIzaSyA1234567890abcdefghijk and my-secret", ["my-secret"])
    assert "sk-abc" not in text and "AIza" not in text and "my-secret" not in text and text.count("[redacted]") == 3


# --- log-probabilities -------------------------------------------------------------------


@pytest.mark.parametrize("structured", [True, False])
def test_logprobs_give_prob_second(server: FakeOpenAIServer, pair: FramePair, structured: bool) -> None:
    from rlvlmf.testing.openai_server import LABEL_PROBS

    backend = OpenAIBackend("fake-vlm", base_url=server.url, logprobs=True, structured_output=structured)
    [answer] = run(backend, [pair])
    stage1, stage2 = server.chat_requests()
    assert "logprobs" not in stage1.body and stage2.body["logprobs"] is True and stage2.body["top_logprobs"] >= 3
    assert answer.prob_second == pytest.approx(LABEL_PROBS["1"] / (LABEL_PROBS["1"] + LABEL_PROBS["0"]))
    assert backend.identity() == OpenAIBackend("fake-vlm", base_url=server.url).identity()


def test_no_logprobs_by_default(server: FakeOpenAIServer, pair: FramePair) -> None:
    [answer] = run(OpenAIBackend("fake-vlm", base_url=server.url), [pair])
    assert answer.prob_second is None and all("logprobs" not in r.body for r in server.chat_requests())


def test_minus_one_logprob_is_read_from_its_first_token() -> None:
    from rlvlmf.feedback.backends.openai import _choice_logprobs
    from rlvlmf.testing.openai_server import label_logprobs

    found = _choice_logprobs(label_logprobs("-1", structured=True), ["0", "1", "-1"])
    assert found is not None and set(found) == {"0", "1", "-1"}
    assert _choice_logprobs({"content": [{"token": "Sure", "logprob": -0.1}]}, ["0", "1", "-1"]) is None
    assert _choice_logprobs(None, ["0", "1"]) is None
