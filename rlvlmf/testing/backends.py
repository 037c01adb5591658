"""In-process backends for labeler and store tests: they count calls and can fail on cue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.base import Answer, Backend, BackendError, FramePair, Label


def brighter_second(pair: FramePair) -> Answer:
    """Prefer the brighter frame: a deterministic answer that depends on the frames' order."""
    first, second = float(pair.first.mean()), float(pair.second.mean())
    label = Label.SECOND if second > first else Label.FIRST if first > second else Label.NONE
    return Answer(label, stages=(f"means {first:.1f} {second:.1f}",), input_tokens=10, output_tokens=2, cost_usd=0.001)


class CountingBackend(Backend):
    """Answers with ``answer_fn`` after ``delay_s``; counts calls and the most calls at once.

    ``failures`` is a queue of exceptions raised by the next calls, one per call, before any
    answer is given.
    """

    family: ClassVar[str] = "counting"

    def __init__(
        self,
        answer_fn: Callable[[FramePair], Answer] = brighter_second,
        *,
        delay_s: float = 0.0,
        max_batch: int = 1,
        name: str = "count-v1",
        failures: Sequence[BaseException] = (),
    ) -> None:
        self.answer_fn = answer_fn
        self.delay_s = delay_s
        self.max_batch = max_batch
        self.name = name
        self.failures: deque[BaseException] = deque(failures)
        self.calls = 0
        self.pairs_seen = 0
        self.call_times: list[float] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self.closed = False

    def identity(self) -> dict[str, Any]:
        return {"family": self.family, "model": self.name}

    async def alabel(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        self.calls += 1
        self.call_times.append(asyncio.get_running_loop().time())
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.failures:
                raise self.failures.popleft()
            self.pairs_seen += len(pairs)
            return [self.answer_fn(pair) for pair in pairs]
        finally:
            self._in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True


class PositionBiasedBackend(CountingBackend):
    """Always prefers whichever frame is shown first: the worst case of position bias."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(lambda pair: Answer(Label.FIRST), **kwargs)


def random_pairs(rng: np.random.Generator, n: int, size: int = 8, rewards: bool = True) -> list[FramePair]:
    """``n`` pairs of distinct random frames, with random single-step rewards when asked."""
    pairs = []
    for _ in range(n):
        first = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        second = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        r1, r2 = (rng.random(1), rng.random(1)) if rewards else (None, None)
        pairs.append(FramePair(first, second, r1, r2))
    return pairs


class BrokenBackend(CountingBackend):
    """Fails every call for good."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(failures=[BackendError("bad request: model not found", status=404)] * 1000, **kwargs)
