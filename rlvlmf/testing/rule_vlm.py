"""A fake VLM that answers by a fixed rule over the pixels, and remembers what it was asked.

Training runs send real rendered frames, whose ground truth a VLM server cannot see. This
responder (for ``FakeOpenAIServer``) decodes the two images of a stage-1 request, names the
pair by the ``frame_hash`` of each image (the same hashes the query store records), and
answers by a deterministic rule: the brighter frame is closer to the goal. The stage-1
analysis carries the pair and its label, so the text-only stage 2 can answer the same way.

Every request is logged with its arrival time, so tests can check that no answer already
in the store was asked for again (``asks``), and that every stored label follows the rule.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlvlmf.feedback.images import decode_png
from rlvlmf.feedback.store import frame_hash
from rlvlmf.testing.openai_server import FakeResponse, RecordedRequest

_PAIR = re.compile(r"PAIR ([0-9a-f]{64}) ([0-9a-f]{64}) LABEL (-?[01])")


def rule_label(first: np.ndarray, second: np.ndarray) -> int:
    """0 if the first frame is brighter, 1 if the second is, -1 when equally bright."""
    a, b = int(first.astype(np.int64).sum()), int(second.astype(np.int64).sum())
    return 0 if a > b else 1 if b > a else -1


def _decode_data_url(url: str) -> np.ndarray:
    return decode_png(base64.b64decode(url.split(",", 1)[1]))


@dataclass(frozen=True)
class Ask:
    """One stage-1 request: which pair (frame hashes in order), and when it arrived."""

    pair: tuple[str, str]
    at: float


class RuleVLM:
    """Responder for ``FakeOpenAIServer(responder=RuleVLM())``.

    Args:
        on_request: Called with the number of stage-1 requests so far, before answering;
            tests use it to kill a client at a chosen moment.
    """

    def __init__(self, on_request: Callable[[int], None] | None = None) -> None:
        self.asks: list[Ask] = []
        self.on_request = on_request
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> FakeResponse:
        urls = request.image_urls()
        if urls:
            first, second = (_decode_data_url(u) for u in urls[:2])
            pair = (frame_hash(first), frame_hash(second))
            with self._lock:
                self.asks.append(Ask(pair, time.time()))
                count = len(self.asks)
            if self.on_request is not None:
                self.on_request(count)
            label = rule_label(first, second)
            return FakeResponse.reply(f"Both images show the scene. PAIR {pair[0]} {pair[1]} LABEL {label}",
                                      prompt_tokens=500, completion_tokens=40)
        match = _PAIR.search(request.text())
        answer = match.group(3) if match else "not a label"
        return FakeResponse.reply(answer, prompt_tokens=120, completion_tokens=2)
