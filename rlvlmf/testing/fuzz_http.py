"""Fuzzed answers through a real chat backend, its fake server, the labeler and a store.

Each answer gets its own pair of tiny frames whose first pixel encodes the answer's index.
The fake server answers stage 1 (the images) with an analysis naming that index, and stage 2
(text only, quoting the analysis) with the fuzzed answer, spliced into the provider's JSON
body as raw bytes when it holds bytes that are not UTF-8. ``check_outcomes`` then reads the
store back and lists every answer whose row is not what it must be.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.base import Backend, FramePair, Label
from rlvlmf.feedback.images import decode_png
from rlvlmf.feedback.labeler import LabeledQuery, Labeler, LabelerConfig
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing import anthropic_server, gemini_server
from rlvlmf.testing.fuzz_answers import FuzzAnswer, json_body_with_text
from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import FakeOpenAIServer, FakeResponse, RecordedRequest

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
FAMILIES = ("openai", "gemini", "anthropic")
_PLACEHOLDER = "@@FUZZ@@"
_ITEM = re.compile(r"fuzz item (\d+)")


def index_pair(index: int) -> FramePair:
    """A pair of 4x4 frames whose first pixel encodes ``index``."""
    first = np.zeros((4, 4, 3), np.uint8)
    first[0, 0] = (index >> 16) & 255, (index >> 8) & 255, index & 255
    first[3, 3] = 7
    return FramePair(first, 255 - first)


def _index_of(png: bytes) -> int:
    pixel = decode_png(png)[0, 0].astype(int)
    return int(pixel[0]) << 16 | int(pixel[1]) << 8 | int(pixel[2])


@dataclass(frozen=True)
class _Wire:
    """How one provider's fake shows images, text and replies."""

    images: Callable[[RecordedRequest], list[bytes]]
    text: Callable[[RecordedRequest], str]
    reply: Callable[[str], FakeResponse]
    """A reply whose answer is this text."""
    answer: Callable[[int], FakeResponse]
    """A reply whose answer text is the placeholder (the index picks a variant)."""


def _openai_images(request: RecordedRequest) -> list[bytes]:
    return [base64.b64decode(url.split(",", 1)[1]) for url in request.image_urls()]


WIRES: dict[str, _Wire] = {
    "openai": _Wire(_openai_images, RecordedRequest.text, lambda t: FakeResponse.reply(t),
                    lambda i: FakeResponse.reply(_PLACEHOLDER)),
    "gemini": _Wire(gemini_server.inline_images, gemini_server.request_text, gemini_server.reply,
                    lambda i: gemini_server.reply(_PLACEHOLDER)),
    # Half the answers come as the forced tool's input, half as a text block.
    "anthropic": _Wire(anthropic_server.images, anthropic_server.request_text, anthropic_server.text_reply,
                       lambda i: anthropic_server.tool_reply({"answer": _PLACEHOLDER}) if i % 2
                       else anthropic_server.text_reply(_PLACEHOLDER)),
}


def fuzz_responder(family: str, answers: Sequence[FuzzAnswer]) -> Callable[[RecordedRequest], FakeResponse]:
    """The server side: an analysis naming the item for stage 1, the fuzzed answer for stage 2."""
    wire = WIRES[family]

    def respond(request: RecordedRequest) -> FakeResponse:
        images = wire.images(request)
        if images:
            return wire.reply(f"Both frames look alike; this is fuzz item {_index_of(images[0])}.")
        match = _ITEM.search(wire.text(request))
        if match is None:
            return FakeResponse.error(400, "no fuzz item in the prompt", type_="invalid_request_error")
        index = int(match.group(1))
        template = wire.answer(index)
        body = json_body_with_text(json.loads(template.body), _PLACEHOLDER, answers[index])
        return FakeResponse(200, body, {"Content-Type": "application/json"})

    return respond


def fake_server(family: str, answers: Sequence[FuzzAnswer]) -> FakeOpenAIServer | ScriptedJSONServer:
    """A (not yet started) fake server of ``family`` answering ``answers``."""
    responder = fuzz_responder(family, answers)
    if family == "openai":
        return FakeOpenAIServer(responder=responder)
    if family == "gemini":
        return gemini_server.fake_gemini_server(responder=responder)
    return anthropic_server.fake_anthropic_server(responder=responder)


def make_fuzz_backend(family: str, url: str, timeout_s: float = 30.0) -> Backend:
    """The real backend of ``family`` pointed at a fake server."""
    from rlvlmf.feedback.registry import make_backend

    return make_backend(f"{family}:fake-model@{url}", timeout_s=timeout_s)


def label_fuzzed(
    family: str, answers: Sequence[FuzzAnswer], store_dir: Path, *, max_in_flight: int = 32
) -> tuple[list[LabeledQuery], QueryStore]:
    """Ask every answer's pair through ``family``'s backend, labeler and a store at ``store_dir``.

    Returns:
        The labeler's results (one per answer, in order) and the open store.
    """
    store = QueryStore(store_dir)
    pairs = [index_pair(i) for i in range(len(answers))]
    with fake_server(family, answers) as server:
        config = LabelerConfig(max_in_flight=max_in_flight, max_retries=0, progress=False)
        with Labeler(make_fuzz_backend(family, server.url), TASK, store, config, run_id=f"fuzz-{family}") as labeler:
            results = labeler.label(pairs)
    return results, store


def check_outcomes(answers: Sequence[FuzzAnswer], results: Sequence[LabeledQuery], store: QueryStore) -> list[str]:
    """Every way the store disagrees with what each answer must give; empty when all is right."""
    problems = []
    rows = store.get_many([r.key for r in results])
    for index, (answer, result) in enumerate(zip(answers, results)):
        row = rows.get(result.key)
        where = f"item {index} ({answer.kind}, {answer.text[:60]!r})"
        if result.failed or row is None or not row.ok:
            problems.append(f"{where}: not answered ({result.error or 'no ok row'})")
            continue
        if row.stages[-1] != answer.text:
            problems.append(f"{where}: stored text differs ({row.stages[-1][:60]!r})")
        expected = Label.NONE if answer.label is None else answer.label
        if row.label != expected or row.abstain_reason != answer.reason:
            problems.append(f"{where}: stored {row.label!r}/{row.abstain_reason!r}, expected {expected!r}/{answer.reason!r}")
    return problems
