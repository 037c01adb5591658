"""The hf backend on a tiny random LLaVA checkpoint built offline and loaded like a real one."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, MissingDependencyError, UserError
from rlvlmf.feedback.backends.hf import HFBackend
from rlvlmf.feedback.base import FramePair, Label
from rlvlmf.feedback.chat import ChatMessage
from rlvlmf.testing.tiny_models import build_tiny_clip, build_tiny_idefics3, build_tiny_llava, write_qwen2_vl_processor

os.environ["HF_HUB_OFFLINE"] = "1"

TASK = TaskDescription(name="drawer-open", goal="to open the drawer", positive_phrases=("an open drawer",))
FAST = {"device": "cpu", "analysis_max_tokens": "12", "answer_max_tokens": "3"}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-models")
    return {
        "llava": build_tiny_llava(root / "llava"),
        "idefics3": build_tiny_idefics3(root / "idefics3"),
        "says-1": build_tiny_llava(root / "says-1", always="1"),
        "says-0": build_tiny_llava(root / "says-0", always="0"),
    }


@pytest.fixture(scope="session", params=["llava", "idefics3"])
def backend(request: pytest.FixtureRequest, checkpoints: dict[str, Path]) -> HFBackend:
    backend = HFBackend.from_spec(str(checkpoints[request.param]), None, max_batch="4", **FAST)
    backend.load()
    return backend


def _pairs(rng: np.random.Generator, n: int) -> list[FramePair]:
    return [FramePair(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8), rng.integers(0, 256, (36, 44, 3), dtype=np.uint8))
            for _ in range(n)]


def _conversation(rng: np.random.Generator, text: str) -> list[ChatMessage]:
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return [ChatMessage("user", ("Image 1:", image, text))]


def test_from_spec_options(checkpoints: dict[str, Path]) -> None:
    backend = HFBackend.from_spec("some/model", None, device="cuda:1", dtype="bfloat16", max_batch="16", temperature="0.5")
    assert (backend.device_option, backend.dtype_option, backend.max_batch) == ("cuda:1", "bfloat16", 16)
    assert backend.identity()["dtype"] == "bfloat16" and backend.identity()["temperature"] == 0.5
    assert backend._model is None, "constructing must not load the model"
    assert HFBackend.estimate_cost(backend, 1000, 1000) == 0.0


def test_the_common_chat_keywords_reach_the_base_class() -> None:
    # HFBackend passes base_url/protocol/timeout_s on as **common; from_spec still finds and converts them.
    assert HFBackend("some/model").timeout_s == 600.0
    backend = HFBackend.from_spec("some/model", None, timeout_s="5", mode="one-stage")
    assert backend.timeout_s == 5.0 and backend.protocol.mode == "one-stage"
    with pytest.raises(ConfigError, match="timeout_s must be positive"):
        HFBackend("some/model", timeout_s=0)


@pytest.mark.parametrize(
    ("options", "match"),
    [({"device": "tpu"}, "unknown device"), ({"dtype": "float8"}, "dtype"), ({"max_batch": "0"}, "max_batch"),
     ({"beam_width": "3"}, "unknown option")],
)
def test_bad_options(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HFBackend.from_spec("some/model", None, **options)


def test_url_is_rejected() -> None:
    with pytest.raises(ConfigError, match="openai:MODEL@URL"):
        HFBackend.from_spec("some/model", "http://localhost:8000/v1")


def test_unloadable_checkpoints_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot load the processor"):
        HFBackend.from_spec(str(tmp_path / "missing"), None, device="cpu").load()
    clip_dir = build_tiny_clip(tmp_path / "clip")
    with pytest.raises(UserError, match="no chat template"):
        HFBackend.from_spec(str(clip_dir), None, device="cpu").load()
    # Qwen2-VL's processor needs torchvision, which this environment lacks on purpose.
    with pytest.raises(MissingDependencyError, match="pip install torchvision"):
        HFBackend.from_spec(str(write_qwen2_vl_processor(tmp_path / "qwen2-vl")), None, device="cpu").load()


def test_check_loads_processor_and_config_but_not_the_weights(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    backend = HFBackend.from_spec(str(checkpoints["llava"]), None, device="cpu")
    backend.check()
    assert backend._model is None
    with pytest.raises(UserError, match="cannot load the processor"):
        HFBackend.from_spec(str(tmp_path / "missing"), None).check()
    with pytest.raises(UserError, match="no chat template"):
        HFBackend.from_spec(str(build_tiny_clip(tmp_path / "clip")), None).check()


def test_an_unreachable_hub_fails_in_seconds_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    started = time.monotonic()
    with pytest.raises(UserError, match=r"model hub http://127.0.0.1:9 cannot be reached") as caught:
        HFBackend.from_spec("nobody/no-such-vlm", None).check()
    assert time.monotonic() - started < 10 and "\n" not in str(caught.value)


def test_batched_generation_matches_one_at_a_time(backend: HFBackend, rng: np.random.Generator) -> None:
    # Prompts of different lengths force left padding inside the batch.
    conversations = [_conversation(rng, "What is shown?" + " Be brief." * i) for i in range(3)]
    together = backend.generate(conversations, choices=("0", "1", "-1"), max_tokens=6)
    alone = [backend.generate([c], choices=("0", "1", "-1"), max_tokens=6)[0] for c in conversations]
    for a, b in zip(together, alone):
        assert a.text == b.text
        assert a.input_tokens == b.input_tokens and a.output_tokens == b.output_tokens
        for choice in ("0", "1", "-1"):
            assert a.choice_logprobs[choice] == pytest.approx(b.choice_logprobs[choice], abs=1e-4)
    assert [r.meta["batch_size"] for r in together] == [3, 3, 3]
    assert len({r.input_tokens for r in together}) == 3


def test_choice_logprobs_are_the_next_token_distribution(backend: HFBackend, rng: np.random.Generator) -> None:
    conversation = _conversation(rng, "Reply 0 or 1.")
    reply = backend.generate([conversation], choices=("0", "1", "-1"), max_tokens=1)[0]
    inputs = backend._encode([conversation])
    with torch.inference_mode():
        logits = backend._model(**inputs).logits[0, -1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    tokenizer = backend._processor.tokenizer
    for choice in ("0", "1", "-1"):
        first = tokenizer.encode(choice, add_special_tokens=False)[0]
        assert reply.choice_logprobs[choice] == pytest.approx(float(logprobs[first]), abs=1e-4)
    assert reply.input_tokens == int(inputs["attention_mask"].sum())
    assert reply.output_tokens == 1 and reply.meta["finish_reason"] in ("length", "stop")


def test_alabel_batches_each_stage(backend: HFBackend, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, bool]] = []
    generate = backend.generate

    def counting(conversations, *, choices=None, max_tokens=512):
        calls.append((len(conversations), choices is not None))
        return generate(conversations, choices=choices, max_tokens=max_tokens)

    monkeypatch.setattr(backend, "generate", counting)
    answers = asyncio.run(backend.alabel(_pairs(rng, 6), TASK))
    # max_batch=4: stage 1 (images, no choices) in batches of 4 + 2, then stage 2 likewise.
    assert sorted(calls) == [(2, False), (2, True), (4, False), (4, True)]
    for answer in answers:
        assert len(answer.stages) == 2
        assert answer.cost_usd == 0 and "unpriced" not in answer.meta
        assert answer.input_tokens > 0 and 0 < answer.output_tokens <= 12 + 3
        # A random model writes noise: never turned into a label, always kept with its reason.
        if answer.label == Label.NONE:
            assert answer.abstain_reason is not None or answer.stages[-1].strip() == "-1"
        assert answer.prob_second is not None and 0 < answer.prob_second < 1


@pytest.mark.parametrize(("checkpoint", "label"), [("says-1", Label.SECOND), ("says-0", Label.FIRST)])
def test_answer_flows_to_the_label(checkpoints: dict[str, Path], checkpoint: str, label: Label,
                                   rng: np.random.Generator) -> None:
    backend = HFBackend.from_spec(str(checkpoints[checkpoint]), None, device="cpu", analysis_max_tokens="4",
                                  answer_max_tokens="1")
    answers = asyncio.run(backend.alabel(_pairs(rng, 3), TASK))
    assert [a.label for a in answers] == [label] * 3
    assert all(a.stages[-1] == str(label.value) for a in answers)
    # The suppression lives in the generation config; choice probabilities come from the raw logits.
    assert all(a.prob_second is not None and not math.isnan(a.prob_second) for a in answers)


def test_generation_failure_reaches_every_caller_and_the_backend_recovers(
    backend: HFBackend, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conversations, *, choices=None, max_tokens=512):
        raise RuntimeError("CUDA out of memory (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(backend, "generate", broken)
        with pytest.raises(RuntimeError, match="out of memory"):
            asyncio.run(backend.alabel(_pairs(rng, 3), TASK))
    assert backend._queue == []
    assert len(asyncio.run(backend.alabel(_pairs(rng, 2), TASK))) == 2
