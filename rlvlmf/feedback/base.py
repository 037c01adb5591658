"""The one small interface every preference backend implements.

Data flows one way: the labeler hands a backend a batch of ``FramePair``s and the task's
``TaskDescription``; the backend returns one ``Answer`` per pair. Backends never cache,
retry or count budgets: the labeler does that, the same way for every backend.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

from rlvlmf.envs.task import TaskDescription


class Label(IntEnum):
    """A preference, in the RL-VLM-F convention."""

    FIRST = 0
    """The first frame is closer to the goal."""
    SECOND = 1
    """The second frame is closer to the goal."""
    NONE = -1
    """No preference, or the backend abstained (see ``Answer.abstain_reason``)."""


@dataclass(frozen=True)
class FramePair:
    """Two frames to compare, in the order they are shown.

    Attributes:
        first: HxWx3 uint8 frame shown first ("Image 1").
        second: HxWx3 uint8 frame shown second ("Image 2").
        first_rewards: Ground-truth rewards of the first frame (shape ``(1,)``) or of the
            segment it ends (shape ``(T,)``), when the env has a reward. Used by the scripted
            teacher and to record the ground-truth label; never shown to a VLM.
        second_rewards: Same for the second frame.
    """

    first: np.ndarray
    second: np.ndarray
    first_rewards: np.ndarray | None = None
    second_rewards: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("first", "second"):
            frame = getattr(self, name)
            if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
                shape = getattr(frame, "shape", None)
                dtype = getattr(frame, "dtype", type(frame).__name__)
                raise ValueError(f"FramePair.{name} must be an HxWx3 uint8 array, got shape {shape} dtype {dtype}")

    def swapped(self) -> FramePair:
        """The same pair shown in the other order."""
        return FramePair(self.second, self.first, self.second_rewards, self.first_rewards)


@dataclass
class Answer:
    """One backend's answer for one pair.

    Attributes:
        label: The parsed preference. ``Label.NONE`` for "no preference" and for abstains.
        prob_second: Probability that the second frame is better, when the backend gives one
            (token log-probabilities, CLIP score softmax, Bradley-Terry teacher).
        stages: Raw model text of every stage, in order (two for the two-stage protocol).
            Stored verbatim, never interpreted outside the parser.
        abstain_reason: Why no label was given (``"unparseable"``, ``"safety block"``,
            ``"position flip"``...). ``None`` when the answer is a real label or a genuine
            "no difference".
        input_tokens: Prompt tokens billed over all stages.
        output_tokens: Completion tokens billed over all stages.
        latency_s: Wall time of the backend calls for this pair.
        cost_usd: Estimated cost in US dollars (0 for local backends).
        meta: Backend-specific extras worth keeping (model version string, finish reason...).
            Must be JSON-serialisable and must never contain secrets.
    """

    label: Label
    prob_second: float | None = None
    stages: tuple[str, ...] = ()
    abstain_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


RngLike = np.random.Generator | int | None
"""What ``make_backend(..., rng=...)`` takes: a generator, a seed, or ``None`` for fresh entropy."""


def backend_seed(rng: RngLike) -> int | None:
    """The seed a backend draws its own generator from.

    An int is the seed; a generator gives one draw (so the caller's stream decides it, and a
    backend whose answers depend on it can put the number in its identity); ``None`` stays
    ``None`` (fresh entropy).
    """
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63))
    return int(rng)


class BackendError(Exception):
    """A backend call failed. ``retryable`` errors are retried by the labeler."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientBackendError(BackendError):
    """Timeouts, dropped connections, HTTP 408/429/5xx: worth retrying after a backoff.

    ``retry_after`` carries the server's Retry-After (seconds) when it sent one.
    """

    retryable = True


class Backend(abc.ABC):
    """A source of preference labels.

    Subclasses set ``family`` (the prefix of the backend spec, e.g. ``"openai"``) and
    implement ``alabel``. Synchronous, batched backends (local models, the scripted teacher)
    implement ``label`` instead and inherit an ``alabel`` that runs it in a worker thread.

    Constructing a backend must not touch the network; reading an API key from the
    environment is fine, storing it anywhere but in memory is not.
    """

    family: ClassVar[str] = ""
    """Spec prefix, e.g. ``"openai"`` in ``openai:gpt-4o``."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Python packages this backend needs beyond the core dependencies (for ``rlvlmf backends``)."""
    key_env: ClassVar[tuple[str, ...]] = ()
    """Environment variables the API key may come from, in order of preference."""
    description: ClassVar[str] = ""
    """One line for ``rlvlmf backends``."""

    max_batch: int = 1
    """How many pairs one ``alabel`` call should get. The labeler splits batches to this size."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that determines this backend's answers, for the query-store key.

        Backend family, model, prompt-template version, decoding parameters, protocol
        options. JSON-serialisable; never secrets, base URLs with credentials, or timeouts.
        """

    def pair_identity(self, pair: FramePair) -> dict[str, Any] | None:
        """What besides the two frames this backend's answer to ``pair`` depends on, for its key.

        ``None`` (the default) for backends that read only the frames. The scripted teacher
        reads the pair's rewards: two pixel-identical pairs with different rewards must not
        share one stored answer. JSON-serialisable, like ``identity``.
        """
        return None

    def label(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        """Label pairs synchronously. Override this or ``alabel``."""
        raise NotImplementedError(f"{type(self).__name__} implements neither label() nor alabel()")

    async def alabel(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        """Label pairs; one ``Answer`` per pair, in order.

        Raises:
            TransientBackendError: The call may succeed if retried.
            BackendError: The call failed for good.
        """
        return await asyncio.to_thread(self.label, pairs, task)

    def check(self) -> None:  # noqa: B027 - an optional hook: most backends have nothing to check
        """Fail now on what would fail at the first call and can be found without one.

        Called before a run starts (and its folder is made). Local backends check their model
        files here (processor, config); it must not load weights, call a provider or cost
        anything. The default checks nothing: keys and options are checked on construction.

        Raises:
            UserError: What is wrong and how to fix it.
        """

    async def aclose(self) -> None:  # noqa: B027 - an optional hook: most backends hold nothing
        """Release connections or models. Safe to call twice."""
