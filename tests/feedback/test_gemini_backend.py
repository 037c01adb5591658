"""The gemini backend against a local server speaking the generateContent wire format."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from rlvlmf.errors import ConfigError
from rlvlmf.feedback.backends.gemini import GeminiBackend
from rlvlmf.feedback.base import Label, TransientBackendError
from rlvlmf.feedback.images import encode_png
from rlvlmf.feedback.labeler import Labeler, LabelerConfig
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing import gemini_server as fake
from rlvlmf.testing.chat_cases import TASK, label_one, random_pair
from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import FakeResponse

KEY = "AIzaFAKE-test-key-0123456789abcdef"


@pytest.fixture
def server() -> Iterator[ScriptedJSONServer]:
    with fake.fake_gemini_server() as server:
        yield server


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


def _backend(server: ScriptedJSONServer, **options: str) -> GeminiBackend:
    return GeminiBackend.from_spec("gemini-2.5-flash", server.url, timeout_s="5", **options)


def test_two_stage_query_on_the_wire(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    pair = random_pair(rng)
    answer = label_one(_backend(server), pair)
    assert answer.label == Label.SECOND and answer.abstain_reason is None
    assert (answer.input_tokens, answer.output_tokens) == (600 + 150, 60 + 2)
    assert answer.cost_usd == pytest.approx((750 * 0.30 + 62 * 2.50) / 1e6)
    assert answer.meta["calls"][0]["modelVersion"] == "gemini-fake-001"

    stage1, stage2 = server.requests
    assert stage1.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert stage1.headers["x-goog-api-key"] == KEY and KEY not in stage1.path
    assert fake.inline_images(stage1) == [encode_png(pair.first), encode_png(pair.second)]
    image_parts = [p["inline_data"] for p in stage1.body["contents"][0]["parts"] if "inline_data" in p]
    assert [p["mime_type"] for p in image_parts] == ["image/png", "image/png"]
    assert "to open the drawer" in fake.request_text(stage1)
    assert stage1.body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 1024, "candidateCount": 1}
    config = stage2.body["generationConfig"]
    assert config["responseMimeType"] == "text/x.enum"
    assert config["responseSchema"] == {"type": "STRING", "enum": ["0", "1", "-1"]}
    assert not fake.inline_images(stage2) and "Text:" in fake.request_text(stage2)


def test_one_stage_thinking_budget_and_thought_parts(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    server.push(fake.reply("Image 1 shows the drawer open.\n0", thought="Let me compare...", thoughts_tokens=40))
    answer = label_one(_backend(server, mode="one-stage", thinking_budget="0"), random_pair(rng))
    assert answer.label == Label.FIRST and answer.stages == ("Image 1 shows the drawer open.\n0",)
    assert answer.output_tokens == 10 + 40, "thinking is billed as output"
    assert server.requests[0].body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    assert GeminiBackend.from_spec("gemini-2.5-flash", server.url, thinking_budget="0").identity()["thinking_budget"] == 0


def test_thinking_that_eats_the_answer_budget_is_an_abstain_with_advice(server: ScriptedJSONServer,
                                                                        rng: np.random.Generator) -> None:
    server.push(fake.default_responder, fake.reply("", finish_reason="MAX_TOKENS", output_tokens=0, thoughts_tokens=16))
    answer = label_one(_backend(server), random_pair(rng))
    assert answer.label == Label.NONE and "thinking_budget=0" in answer.abstain_reason
    server.push(fake.default_responder)
    label_one(_backend(server, thinking_budget="128"), random_pair(rng))
    assert server.requests[-1].body["generationConfig"]["maxOutputTokens"] == 16 + 128


@pytest.mark.parametrize(
    ("response", "reason"),
    [(fake.prompt_blocked("PROHIBITED_CONTENT"), "prompt blocked: PROHIBITED_CONTENT"),
     (fake.candidate_stopped("SAFETY"), "finish reason SAFETY"),
     (fake.candidate_stopped("RECITATION"), "finish reason RECITATION"),
     (fake.no_candidates(), "no candidates")],
)
def test_safety_blocks_and_empty_candidates_are_abstains_with_the_reason(
    server: ScriptedJSONServer, rng: np.random.Generator, response: FakeResponse, reason: str
) -> None:
    server.push(response)
    answer = label_one(_backend(server), random_pair(rng))
    assert answer.label == Label.NONE and answer.abstain_reason == reason
    assert server.count == 1, "no stage 2 after a refused stage 1"
    assert answer.input_tokens == 80


def test_stage2_block_is_recorded_too(server: ScriptedJSONServer, rng: np.random.Generator) -> None:
    server.push(fake.default_responder, fake.candidate_stopped("SAFETY"))
    answer = label_one(_backend(server), random_pair(rng))
    assert answer.abstain_reason == "finish reason SAFETY" and len(answer.stages) == 2


@pytest.mark.parametrize(
    ("response", "retry_after"),
    [(fake.error(429, "Quota exceeded", retry_delay="7s"), 7.0),
     (fake.error(429, "Quota exceeded", retry_delay="1.5s", retry_after="3"), 3.0)],
)
def test_retry_info_in_the_body_is_the_retry_after(
    server: ScriptedJSONServer, rng: np.random.Generator, response: FakeResponse, retry_after: float | None
) -> None:
    server.push(response)
    with pytest.raises(TransientBackendError) as info:
        label_one(_backend(server), random_pair(rng))
    assert info.value.status == response.status and info.value.retry_after == retry_after


def test_labeler_retries_after_retry_info_and_stores_the_answer(server: ScriptedJSONServer, rng: np.random.Generator,
                                                                tmp_path) -> None:
    server.push(fake.error(429, "Quota exceeded", retry_delay="0.2s"))
    store = QueryStore(tmp_path / "queries")
    config = LabelerConfig(backoff_base_s=0.01, progress=False)
    labeler = Labeler(_backend(server), TASK, store, config, run_id="test", rng=rng)
    try:
        result = labeler.label([random_pair(rng)])[0]
    finally:
        labeler.close()
    assert result.label == Label.SECOND and not result.failed and server.count == 3


def test_key_and_url_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-fallback")
    backend = GeminiBackend.from_spec("models/gemini-2.5-flash", None)
    assert backend._api_key == "AIza-google-fallback" and backend.model == "gemini-2.5-flash"
    assert backend.endpoint == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert "AIza" not in str(backend.identity())
    # A gateway needs no key; a URL that already names the API version keeps it.
    monkeypatch.delenv("GOOGLE_API_KEY")
    gateway = GeminiBackend.from_spec("gemini-2.0-flash", "https://gw.example.com/google/v1/")
    assert gateway.endpoint == "https://gw.example.com/google/v1/models/gemini-2.0-flash:generateContent"
    with pytest.raises(ConfigError, match="thinking_budget"):
        GeminiBackend.from_spec("g", "http://x", thinking_budget="-5")
    with pytest.raises(ConfigError, match="unknown option"):
        GeminiBackend.from_spec("g", "http://x", safety="off")
