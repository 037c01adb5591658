"""Chat-model backends: the RL-VLM-F prompting protocol over any provider's chat call.

A provider backend (OpenAI-compatible, Gemini, Anthropic, local transformers) implements one
method, ``asend``: send one ``ChatRequest`` (a conversation of text and images, and how to
decode it), get text back. Callers use ``achat``, which builds the request. Everything else —
which prompts to send, two-stage or one-stage, parsing, cost — is done here once, so every
chat backend behaves the same. (Position-bias control, retries, budgets and concurrency are
the labeler's, the same for every backend.)

Writing a provider backend::

    class MyBackend(ChatBackend):
        family = "mine"
        key_env = ("MY_API_KEY",)

        def __init__(self, model, *, region="eu", **common: Unpack[ChatOptions]):
            super().__init__(model, **common)   # base_url, protocol, timeout_s
            self.region = region          # provider option; add it to _identity_extra if it
                                          # changes answers
        async def asend(self, request: ChatRequest) -> ChatReply: ...

``MyBackend.from_spec("model-name", "https://host/v1", mode="one-stage", region="us")`` sorts
protocol options (``ProtocolConfig`` fields) from provider options and builds it. A provider
reached over HTTP subclasses ``rlvlmf.feedback.http_chat.HttpChatBackend`` instead, which
sets up the endpoint, the API key and the HTTP clients once for all of them.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

import numpy as np

from rlvlmf.config import from_dict
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.feedback import prompts
from rlvlmf.feedback.base import Answer, Backend, FramePair, Label, RngLike
from rlvlmf.feedback.parsing import parse_label
from rlvlmf.feedback.pricing import estimate_cost

Part = str | np.ndarray
"""A message part: text, or an HxWx3 uint8 image."""

_B = TypeVar("_B", bound="ChatBackend")


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation: a role and its text and image parts, in order."""

    role: Literal["system", "user", "assistant"]
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class ChatRequest:
    """One provider call: the conversation and how the answer is decoded.

    ``ChatBackend.achat`` builds it, so each provider's ``asend`` takes this one argument
    instead of repeating the call's keyword signature.

    Attributes:
        messages: The conversation, images inline.
        choices: When given, the answer must be exactly one of these strings; use the
            provider's structured output (JSON schema, choice list, forced tool call) when it
            supports it, else plain text (the parser checks it either way). ``None`` for free text.
        max_tokens: Upper bound on generated tokens.
    """

    messages: tuple[ChatMessage, ...]
    choices: tuple[str, ...] | None = None
    max_tokens: int = 512

    @property
    def has_images(self) -> bool:
        """Whether any message carries an image part."""
        return any(isinstance(p, np.ndarray) for m in self.messages for p in m.parts)


@dataclass
class ChatReply:
    """What a provider answered.

    Attributes:
        text: The model's text ("" when it gave none).
        input_tokens: Prompt tokens billed.
        output_tokens: Completion tokens billed.
        refusal: Why the provider gave no answer (safety block, empty candidates, refusal
            text), or ``None``. A refusal becomes an abstain with this reason.
        choice_logprobs: Log-probabilities of each allowed choice (``{"0": -0.1, "1": -2.3}``)
            when the provider exposes them; used for ``Answer.prob_second``.
        meta: Provider extras worth storing (model version, finish reason). No secrets.
    """

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    refusal: str | None = None
    choice_logprobs: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolConfig:
    """How a chat backend asks for a preference. Every field enters the query-store key.

    Attributes:
        mode: ``"two-stage"`` (RL-VLM-F: analyse both images, then answer from the analysis
            in a text-only call) or ``"one-stage"`` (the paper's ablation: one call).
        composite: Send both frames as one side-by-side picture instead of two images.
        temperature: Sampling temperature; 0 is greedy, for reproducible labels.
        analysis_max_tokens: Token limit of stage 1 (and of the one-stage call).
        answer_max_tokens: Token limit of stage 2, which answers with one short line.
    """

    mode: Literal["two-stage", "one-stage"] = "two-stage"
    composite: bool = False
    temperature: float = 0.0
    analysis_max_tokens: int = 1024
    answer_max_tokens: int = 16

    def __post_init__(self) -> None:
        if self.mode not in ("two-stage", "one-stage"):
            raise ConfigError(f"protocol mode {self.mode!r} is not valid; use 'two-stage' or 'one-stage'")
        if not (0.0 <= self.temperature <= 2.0):
            raise ConfigError(f"temperature {self.temperature} is out of range; use a value in [0, 2]")
        for name in ("analysis_max_tokens", "answer_max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive number of tokens, got {getattr(self, name)}")

    @property
    def prompt_version(self) -> str:
        """Version of the prompt templates this protocol sends (a hash of their text)."""
        return prompts.template_version(self.mode, self.composite)

    def identity(self) -> dict[str, Any]:
        """The protocol's part of a backend identity (JSON-serialisable)."""
        return {
            "prompt_version": self.prompt_version,
            "mode": self.mode,
            "composite": self.composite,
            "temperature": self.temperature,
            "analysis_max_tokens": self.analysis_max_tokens,
            "answer_max_tokens": self.answer_max_tokens,
        }

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ProtocolConfig:
        """Build from option values that may be text (``{"composite": "true"}``).

        Raises:
            ConfigError: Unknown option or bad value.
        """
        return from_dict(cls, options)


class ChatOptions(TypedDict, total=False):
    """The keywords every chat backend takes besides its own: a subclass's ``**common``, passed on."""

    base_url: str | None
    protocol: ProtocolConfig | None
    timeout_s: float


PROTOCOL_OPTIONS: frozenset[str] = frozenset(f.name for f in fields(ProtocolConfig))
"""Option names ``from_spec`` routes into ``ProtocolConfig``."""


class ChatBackend(Backend, abc.ABC):
    """Base class of chat VLM backends; subclasses implement ``asend`` only.

    Args:
        model: The provider's model name (or local path).
        base_url: API endpoint override; ``None`` means the provider's default.
        protocol: How to ask; defaults to the RL-VLM-F two-stage protocol.
        timeout_s: Per-request timeout in seconds (never part of the identity).
    """

    max_batch: int = 1
    priced: ClassVar[bool] = True
    """Whether calls cost money. Local backends set False: cost 0 without an 'unpriced' note."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        protocol: ProtocolConfig | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not model or not model.strip():
            raise ConfigError(f"{self.family or type(self).__name__}: give a model name, e.g. '{self.family}:MODEL'")
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
        self.model = model
        self.base_url = base_url
        self.protocol = protocol or ProtocolConfig()
        self.timeout_s = float(timeout_s)

    # --- construction from a spec -----------------------------------------------------------

    @classmethod
    def from_spec(cls: type[_B], model: str, base_url: str | None = None, *, rng: RngLike = None, **options: Any) -> _B:
        """Build from a spec's parts: ``family:MODEL@URL`` plus ``key=value`` options.

        Protocol options (``mode``, ``composite``, ``temperature``, ``analysis_max_tokens``,
        ``answer_max_tokens``) go into a ``ProtocolConfig``; the rest are passed to the
        constructor (``timeout_s`` and provider options). Text values are converted to the
        type of the parameter's default (``"true"`` -> True, ``"30"`` -> 30.0). ``rng`` is
        accepted like every backend's and unused: a chat model samples (``temperature``)
        where it runs, not from a generator of ours.

        Raises:
            ConfigError: An unknown option (the valid ones are listed) or a bad value.
        """
        protocol = ProtocolConfig.from_options({k: v for k, v in options.items() if k in PROTOCOL_OPTIONS})
        accepted = _keyword_defaults(cls)
        provider = {k: v for k, v in options.items() if k not in PROTOCOL_OPTIONS}
        unknown = sorted(set(provider) - set(accepted))
        if unknown:
            valid = sorted(PROTOCOL_OPTIONS | set(accepted))
            raise ConfigError(f"{cls.family}: unknown option(s) {unknown}; valid options: {', '.join(valid)}")
        kwargs = {k: _coerce_like(accepted[k], v, k) for k, v in provider.items()}
        return cls(model, base_url=base_url, protocol=protocol, **kwargs)

    # --- identity ---------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Family, model, prompt version and decoding options; never keys, URLs or timeouts."""
        return {"family": self.family, "model": self.model, **self.protocol.identity(), **self._identity_extra()}

    def _identity_extra(self) -> dict[str, Any]:
        """Provider options that change answers (override to add them to the store key)."""
        return {}

    # --- the provider call ------------------------------------------------------------------

    async def achat(
        self,
        messages: Sequence[ChatMessage],
        *,
        choices: Sequence[str] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        """Send one conversation and return the reply (builds a ``ChatRequest`` for ``asend``).

        Decoding uses ``self.protocol.temperature``.

        Args:
            messages: The conversation, images inline.
            choices: When given, the answer must be exactly one of these strings (see ``ChatRequest``).
            max_tokens: Upper bound on generated tokens.

        Raises:
            TransientBackendError: timeouts, connection errors, HTTP 408/429/5xx (with the
                server's Retry-After when sent).
            BackendError: any other failure (bad key, bad request, unknown model).
        """
        return await self.asend(ChatRequest(tuple(messages), tuple(choices) if choices else None, max_tokens))

    @abc.abstractmethod
    async def asend(self, request: ChatRequest) -> ChatReply:
        """The provider call: send ``request`` and return the reply (errors as in ``achat``)."""

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float | None:
        """Dollar cost of a call, or ``None`` when the model's price is unknown."""
        if not self.priced:
            return 0.0
        return estimate_cost(self.model, input_tokens, output_tokens)

    # --- the RL-VLM-F protocol --------------------------------------------------------------

    async def alabel(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        """Label each pair with the configured protocol (pairs run concurrently).

        Raises:
            TransientBackendError: A provider call may succeed if retried.
            BackendError: A provider call failed for good.
        """
        return list(await asyncio.gather(*(self.label_pair(pair, task.goal) for pair in pairs)))

    async def label_pair(self, pair: FramePair, goal: str) -> Answer:
        """Ask about one pair: two calls (two-stage) or one (one-stage)."""
        protocol = self.protocol
        start = time.perf_counter()
        replies: list[ChatReply] = []
        if protocol.mode == "two-stage":
            stage1 = prompts.stage1_parts(pair.first, pair.second, goal, composite=protocol.composite)
            analysis = await self.achat([ChatMessage("user", stage1)], max_tokens=protocol.analysis_max_tokens)
            replies.append(analysis)
            if analysis.refusal is None and analysis.text.strip():
                stage2 = prompts.stage2_text(analysis.text, goal)
                replies.append(
                    await self.achat(
                        [ChatMessage("user", (stage2,))],
                        choices=prompts.LABEL_CHOICES,
                        max_tokens=protocol.answer_max_tokens,
                    )
                )
        else:
            parts = prompts.one_stage_parts(pair.first, pair.second, goal, composite=protocol.composite)
            replies.append(await self.achat([ChatMessage("user", parts)], max_tokens=protocol.analysis_max_tokens))
        return self._answer(replies, time.perf_counter() - start)

    def _answer(self, replies: list[ChatReply], latency_s: float) -> Answer:
        input_tokens = sum(r.input_tokens for r in replies)
        output_tokens = sum(r.output_tokens for r in replies)
        cost = self.estimate_cost(input_tokens, output_tokens)
        meta: dict[str, Any] = {"calls": [r.meta for r in replies]}
        if cost is None:
            meta["unpriced"] = True
        answer = Answer(
            label=Label.NONE,
            stages=tuple(r.text for r in replies),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_s=latency_s,
            cost_usd=cost or 0.0,
            meta=meta,
        )
        last = replies[-1]
        refusal = next((r.refusal for r in replies if r.refusal is not None), None)
        if refusal is not None:
            answer.abstain_reason = refusal
        elif self.protocol.mode == "two-stage" and len(replies) == 1:
            answer.abstain_reason = "empty analysis"
        else:
            parsed = parse_label(last.text)
            answer.label = parsed.label
            answer.abstain_reason = parsed.reason
            answer.prob_second = prob_second(last.choice_logprobs)
        return answer


def prob_second(choice_logprobs: Mapping[str, float] | None) -> float | None:
    """P(second better) from the log-probabilities of "0" and "1" (softmax over the two).

    A choice missing from the mapping counts as probability 0; ``None`` when neither is there.
    """
    if not choice_logprobs:
        return None
    lp0 = choice_logprobs.get("0", -math.inf)
    lp1 = choice_logprobs.get("1", -math.inf)
    if lp0 == -math.inf and lp1 == -math.inf:
        return None
    top = max(lp0, lp1)
    e0, e1 = math.exp(lp0 - top), math.exp(lp1 - top)
    return e1 / (e0 + e1)


def _keyword_defaults(cls: type) -> dict[str, Any]:
    """Keyword-only parameters of ``cls.__init__`` with their defaults, minus the fixed ones.

    An ``__init__`` that passes ``**kwargs`` on to its base class takes the base's keywords
    too, so the search goes up the classes until an ``__init__`` without ``**kwargs``.
    """
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("base_url", "protocol"):
                found.setdefault(p.name, p.default)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return found


def _coerce_like(default: Any, value: Any, name: str) -> Any:
    """Convert option text to the type of the parameter's default value."""
    if not isinstance(value, str) or default is None or isinstance(default, str) or default is inspect.Parameter.empty:
        return value
    try:
        if isinstance(default, bool):
            lowered = value.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                raise ValueError(value)
            return lowered in {"true", "1", "yes", "on"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ConfigError(f"option {name}={value!r}: expected a {type(default).__name__}") from None
    return value
