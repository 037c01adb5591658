"""ChatBackend: the protocol, the answer it builds, its identity, and construction from a spec."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.feedback import prompts
from rlvlmf.feedback.base import Answer, FramePair, Label
from rlvlmf.feedback.chat import ChatBackend, ChatMessage, ChatReply, ChatRequest, ProtocolConfig, prob_second
from rlvlmf.feedback.pricing import estimate_cost, price_of

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))


class RecordingChat(ChatBackend):
    """A chat backend answering from a function, recording every call."""

    family = "recording"

    def __init__(self, model: str = "recorder", *, base_url: str | None = None, protocol: ProtocolConfig | None = None,
                 timeout_s: float = 60.0,
                 answer: Callable[[Sequence[ChatMessage], Sequence[str] | None], ChatReply] | None = None,
                 flavour: str = "plain", retries: int = 0) -> None:
        super().__init__(model, base_url=base_url, protocol=protocol, timeout_s=timeout_s)
        self.answer = answer or _default_answer
        self.flavour = flavour
        self.retries = retries
        self.calls: list[tuple[Sequence[ChatMessage], Sequence[str] | None, int]] = []

    async def asend(self, request: ChatRequest) -> ChatReply:
        self.calls.append((request.messages, request.choices, request.max_tokens))
        return self.answer(request.messages, request.choices)


def _has_images(messages: Sequence[ChatMessage]) -> bool:
    return any(isinstance(p, np.ndarray) for m in messages for p in m.parts)


def _default_answer(messages: Sequence[ChatMessage], choices: Sequence[str] | None) -> ChatReply:
    if _has_images(messages):
        return ChatReply("Image 2 shows the drawer open.", input_tokens=1000, output_tokens=40)
    return ChatReply("1", input_tokens=200, output_tokens=2)


@pytest.fixture
def pair(rng: np.random.Generator) -> FramePair:
    return FramePair(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


def label(backend: ChatBackend, pairs: Sequence[FramePair]) -> list[Answer]:
    return asyncio.run(backend.alabel(pairs, TASK))


# --- the protocol ------------------------------------------------------------------------


def test_two_stage_sends_images_then_text_with_choices(pair: FramePair) -> None:
    backend = RecordingChat()
    [answer] = label(backend, [pair])
    assert len(backend.calls) == 2
    (stage1, choices1, max1), (stage2, choices2, max2) = backend.calls
    assert _has_images(stage1) and choices1 is None and max1 == backend.protocol.analysis_max_tokens
    assert stage1[0].parts == prompts.stage1_parts(pair.first, pair.second, TASK.goal)
    assert not _has_images(stage2) and tuple(choices2) == ("0", "1", "-1") and max2 == backend.protocol.answer_max_tokens
    assert stage2[0].parts == (prompts.stage2_text("Image 2 shows the drawer open.", TASK.goal),)
    assert answer.label is Label.SECOND and answer.abstain_reason is None
    assert answer.stages == ("Image 2 shows the drawer open.", "1")
    assert (answer.input_tokens, answer.output_tokens) == (1200, 42)
    assert answer.latency_s > 0


def test_achat_hands_the_provider_one_frozen_request(pair: FramePair) -> None:
    backend = RecordingChat()
    message = ChatMessage("user", ("which?", pair.first))
    asyncio.run(backend.achat([message], choices=["0", "1"], max_tokens=7))
    asyncio.run(backend.achat([ChatMessage("user", ("text only",))], choices=[]))
    (messages, choices, max_tokens), (_, no_choices, default_max) = backend.calls
    # Lists become tuples, so a request can be hashed and batched; no choices is None, not ().
    assert messages == (message,) and choices == ("0", "1") and max_tokens == 7
    assert no_choices is None and default_max == 512
    request = ChatRequest((message,), ("0", "1"), 7)
    assert request.has_images and not ChatRequest((ChatMessage("user", ("text",)),)).has_images
    with pytest.raises(AttributeError):
        request.max_tokens = 8  # type: ignore[misc]


def test_a_backend_without_asend_cannot_be_built() -> None:
    class NoCall(ChatBackend):
        family = "no-call"

    with pytest.raises(TypeError, match="asend"):
        NoCall("m")  # type: ignore[abstract]


def test_one_stage_makes_one_call(pair: FramePair) -> None:
    backend = RecordingChat(protocol=ProtocolConfig(mode="one-stage"),
                            answer=lambda m, c: ChatReply("The drawer is open in Image 1.\nAnswer: 0", 900, 50))
    [answer] = label(backend, [pair])
    assert len(backend.calls) == 1
    messages, choices, _ = backend.calls[0]
    assert messages[0].parts == prompts.one_stage_parts(pair.first, pair.second, TASK.goal)
    assert choices is None
    assert answer.label is Label.FIRST and answer.stages == ("The drawer is open in Image 1.\nAnswer: 0",)


def test_composite_protocol_sends_one_image(pair: FramePair) -> None:
    backend = RecordingChat(protocol=ProtocolConfig(composite=True))
    label(backend, [pair])
    images = [p for p in backend.calls[0][0][0].parts if isinstance(p, np.ndarray)]
    assert len(images) == 1 and images[0].shape[1] > pair.first.shape[1] + pair.second.shape[1]


def test_each_pair_gets_its_own_protocol_run(pair: FramePair) -> None:
    backend = RecordingChat()
    answers = label(backend, [pair, pair.swapped(), pair])
    assert len(answers) == 3 and len(backend.calls) == 6


def test_unparseable_answer_abstains_and_keeps_the_text(pair: FramePair) -> None:
    garbage = "¯\\_(ツ)_/¯ <b>both?</b>"
    backend = RecordingChat(answer=lambda m, c: ChatReply("analysis") if _has_images(m) else ChatReply(garbage))
    [answer] = label(backend, [pair])
    assert answer.label is Label.NONE and answer.abstain_reason == "unparseable"
    assert answer.stages == ("analysis", garbage)


def test_explicit_no_preference_is_not_an_abstain(pair: FramePair) -> None:
    backend = RecordingChat(answer=lambda m, c: ChatReply("same") if _has_images(m) else ChatReply('{"answer": "-1"}'))
    [answer] = label(backend, [pair])
    assert answer.label is Label.NONE and answer.abstain_reason is None


@pytest.mark.parametrize("refusing_stage", [1, 2])
def test_provider_refusal_becomes_an_abstain_with_its_reason(pair: FramePair, refusing_stage: int) -> None:
    def answer(messages: Sequence[ChatMessage], choices: Sequence[str] | None) -> ChatReply:
        stage = 1 if _has_images(messages) else 2
        if stage == refusing_stage:
            return ChatReply("", refusal="safety block: HARM_CATEGORY_DANGEROUS")
        return ChatReply("analysis" if stage == 1 else "1")

    backend = RecordingChat(answer=answer)
    [result] = label(backend, [pair])
    assert result.label is Label.NONE and result.abstain_reason == "safety block: HARM_CATEGORY_DANGEROUS"
    assert len(backend.calls) == refusing_stage  # no stage 2 after a stage-1 refusal


def test_empty_analysis_abstains_without_a_second_call(pair: FramePair) -> None:
    backend = RecordingChat(answer=lambda m, c: ChatReply("   "))
    [answer] = label(backend, [pair])
    assert answer.abstain_reason == "empty analysis" and len(backend.calls) == 1


def test_choice_logprobs_give_prob_second(pair: FramePair) -> None:
    logprobs = {"0": math.log(0.2), "1": math.log(0.6), "-1": math.log(0.2)}
    backend = RecordingChat(answer=lambda m, c: ChatReply("a") if _has_images(m) else ChatReply("1", choice_logprobs=logprobs))
    [answer] = label(backend, [pair])
    assert answer.prob_second == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("logprobs", "expected"),
    [(None, None), ({}, None), ({"-1": 0.0}, None), ({"1": -0.5}, 1.0), ({"0": -0.5}, 0.0),
     ({"0": math.log(0.5), "1": math.log(0.5)}, 0.5), ({"0": -1000.0, "1": -1001.0}, 1 / (1 + math.e))],
)
def test_prob_second(logprobs: dict[str, float] | None, expected: float | None) -> None:
    result = prob_second(logprobs)
    assert result == (pytest.approx(expected) if expected is not None else None)


# --- cost --------------------------------------------------------------------------------


def test_priced_model_gets_a_cost(pair: FramePair) -> None:
    [answer] = label(RecordingChat("gpt-4o-2024-08-06"), [pair])
    assert answer.cost_usd == pytest.approx(estimate_cost("gpt-4o", 1200, 42)) and answer.cost_usd > 0
    assert "unpriced" not in answer.meta


def test_unknown_model_costs_zero_and_says_so(pair: FramePair) -> None:
    [answer] = label(RecordingChat("my-local-vlm"), [pair])
    assert answer.cost_usd == 0.0 and answer.meta["unpriced"] is True
    json.dumps(answer.meta)


def test_local_backends_are_free_without_a_note(pair: FramePair) -> None:
    class Local(RecordingChat):
        priced = False

    [answer] = label(Local("gpt-4o"), [pair])
    assert answer.cost_usd == 0.0 and "unpriced" not in answer.meta


@pytest.mark.parametrize(
    ("model", "table_name"),
    [("gpt-4o", "gpt-4o"), ("gpt-4o-mini", "gpt-4o-mini"), ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
     ("claude-sonnet-4-20250514", "claude-sonnet-4"), ("models/gemini-2.5-flash", "gemini-2.5-flash"),
     ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"), ("openai/gpt-4.1", "gpt-4.1"), ("GPT-4o", "gpt-4o")],
)
def test_price_lookup_matches_versions_not_siblings(model: str, table_name: str) -> None:
    from rlvlmf.feedback.pricing import PRICES_PER_MTOK

    assert price_of(model) == PRICES_PER_MTOK[table_name]


@pytest.mark.parametrize("model", ["Qwen/Qwen2.5-VL-7B-Instruct", "gpt-4o-turbo-ultra", "llava:7b", ""])
def test_unknown_models_are_unpriced(model: str) -> None:
    assert estimate_cost(model, 1000, 100) is None


# --- identity and configuration ----------------------------------------------------------


def test_identity_names_model_protocol_and_prompt_version() -> None:
    backend = RecordingChat("m", base_url="http://secret-host:1/v1", timeout_s=5)
    identity = backend.identity()
    assert identity["family"] == "recording" and identity["model"] == "m"
    assert identity["prompt_version"] == prompts.template_version("two-stage", False)
    assert {"mode", "composite", "temperature", "analysis_max_tokens", "answer_max_tokens"} <= set(identity)
    text = json.dumps(identity)
    assert "secret-host" not in text and "timeout" not in text


def test_identity_changes_with_every_protocol_field() -> None:
    base = RecordingChat().identity()
    for change in [{"mode": "one-stage"}, {"composite": True}, {"temperature": 0.7},
                   {"analysis_max_tokens": 100}, {"answer_max_tokens": 4}]:
        assert RecordingChat(protocol=ProtocolConfig(**change)).identity() != base, change


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "three-stage"}, "two-stage"), ({"temperature": -0.1}, r"\[0, 2\]"), ({"temperature": 3.0}, r"\[0, 2\]"),
     ({"analysis_max_tokens": 0}, "positive"), ({"answer_max_tokens": -1}, "positive")],
)
def test_protocol_config_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ProtocolConfig(**kwargs)


def test_from_spec_routes_protocol_and_provider_options() -> None:
    backend = RecordingChat.from_spec("m", "http://localhost:9/v1", mode="one-stage", composite="true",
                                      temperature="0.5", answer_max_tokens="8", timeout_s="2.5", flavour="spicy", retries="3")
    assert backend.protocol == ProtocolConfig(mode="one-stage", composite=True, temperature=0.5, answer_max_tokens=8)
    assert backend.timeout_s == 2.5 and backend.flavour == "spicy" and backend.retries == 3
    assert backend.base_url == "http://localhost:9/v1"


@pytest.mark.parametrize(
    ("options", "match"),
    [({"colour": "red"}, r"unknown option.*colour.*valid options: .*composite.*flavour"),
     ({"composite": "maybe"}, "true/false"), ({"retries": "many"}, "retries"), ({"mode": "zero-stage"}, "one-stage")],
)
def test_from_spec_refuses_bad_options(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RecordingChat.from_spec("m", None, **options)


@pytest.mark.parametrize(("model", "timeout"), [("", 1.0), ("  ", 1.0), ("m", 0.0)])
def test_constructor_refuses_bad_values(model: str, timeout: float) -> None:
    with pytest.raises(ConfigError):
        RecordingChat(model, timeout_s=timeout)
