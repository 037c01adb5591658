"""Chat-model backends: the RL-VLM-F prompting protocol over any provider's chat call.

A provider backend (OpenAI-compatible, Gemini, Anthropic, local transformers) implements one
method, ``achat``: send a conversation of text and images, get text back. Everything else —
which prompts to send, two-stage or one-stage, position-bias control, parsing — is done here
once, so every chat backend behaves the same.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rlvlmf.feedback.base import Backend

Part = str | np.ndarray
"""A message part: text, or an HxWx3 uint8 image."""


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation: a role and its text and image parts, in order."""

    role: Literal["system", "user", "assistant"]
    parts: tuple[Part, ...]


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


class ChatBackend(Backend, abc.ABC):
    """Base class of chat VLM backends; subclasses implement ``achat`` only."""

    @abc.abstractmethod
    async def achat(
        self,
        messages: Sequence[ChatMessage],
        *,
        choices: Sequence[str] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        """Send one conversation and return the reply.

        Args:
            messages: The conversation, images inline.
            choices: When given, the answer must be exactly one of these strings; use the
                provider's structured output (JSON schema, choice list, forced tool call)
                when it supports it, else plain text (the parser checks it either way).
            max_tokens: Upper bound on generated tokens.

        Raises:
            TransientBackendError: timeouts, connection errors, HTTP 408/429/5xx (with the
                server's Retry-After when sent).
            BackendError: any other failure (bad key, bad request, unknown model).
        """
