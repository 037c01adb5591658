"""Fault injection for the fake provider servers, over an answer everyone can check.

``rule_responder(family)`` answers like a consistent VLM: the brighter frame of a pair is
closer to the goal (``rule_label``), so a test knows every pair's correct label.
``FaultInjector`` wraps any responder and, at a seeded random rate, answers a request with
a fault instead: 429 with and without Retry-After, 500, 503, a stall past the client's
timeout, or a connection closed mid-body. It counts what it injected.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable

import numpy as np

from rlvlmf.feedback.images import decode_png
from rlvlmf.testing import anthropic_server, gemini_server
from rlvlmf.testing.fuzz_http import WIRES
from rlvlmf.testing.openai_server import FakeResponse, RecordedRequest
from rlvlmf.testing.rule_vlm import rule_label

Responder = Callable[[RecordedRequest], FakeResponse]

FAULTS = ("429+retry-after", "429", "500", "503", "stall", "drop")
"""Fault kinds, drawn uniformly."""

_LABEL = re.compile(r"RULE LABEL (-?[01])")

_ERRORS: dict[str, Callable[..., FakeResponse]] = {
    "openai": lambda status, retry_after=None: FakeResponse.error(status, "injected", retry_after=retry_after),
    "gemini": lambda status, retry_after=None: gemini_server.error(status, "injected", retry_after=retry_after),
    "anthropic": lambda status, retry_after=None: anthropic_server.error(status, "injected", retry_after=retry_after),
}


def rule_responder(family: str) -> Responder:
    """Stage 1: decode both images, state the rule's label; stage 2: answer it."""
    wire = WIRES[family]

    def respond(request: RecordedRequest) -> FakeResponse:
        images = wire.images(request)
        if images:
            label = rule_label(decode_png(images[0]), decode_png(images[1]))
            return wire.reply(f"Image 1 and Image 2 differ in brightness. RULE LABEL {label}")
        match = _LABEL.search(wire.text(request))
        return wire.reply(match.group(1) if match else "no analysis to answer from")

    return respond


class FaultInjector:
    """Responder that injects faults at ``rate`` and otherwise asks ``answer``.

    Args:
        family: Provider whose error body to send.
        answer: The responder for requests that get no fault.
        rng: Source of the draws (used under a lock: the server is threaded).
        rate: Probability of a fault per request.
        stall_s: How long a stall holds the request (more than the client's timeout).
        retry_after: The Retry-After value sent with ``429+retry-after``.
    """

    def __init__(self, family: str, answer: Responder, rng: np.random.Generator, *, rate: float = 0.3,
                 stall_s: float = 2.0, retry_after: str = "0.02") -> None:
        self.family = family
        self.answer = answer
        self.rng = rng
        self.rate = rate
        self.stall_s = stall_s
        self.retry_after = retry_after
        self.injected: Counter[str] = Counter()
        self.answered = 0
        self._lock = threading.Lock()

    @property
    def total_injected(self) -> int:
        """Faults injected so far."""
        return sum(self.injected.values())

    def __call__(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            fault = FAULTS[int(self.rng.integers(len(FAULTS)))] if self.rng.random() < self.rate else None
            if fault is None:
                self.answered += 1
            else:
                self.injected[fault] += 1
        if fault is None:
            return self.answer(request)
        error = _ERRORS[self.family]
        if fault == "429+retry-after":
            return error(429, retry_after=self.retry_after)
        if fault == "stall":
            return FakeResponse.stall(self.stall_s)
        if fault == "drop":
            return FakeResponse(200, self.answer(request).body, {"Content-Type": "application/json"}, action="drop")
        return error(int(fault[:3]))
