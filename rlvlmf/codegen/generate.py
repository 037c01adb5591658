"""Generate, verify, regenerate: reward code from a chat VLM (VLM-CaR).

Reads like the method: ask for sub-goal checkers, verify them on successful and random
episodes in the sandbox, send failures back, and stop at the first program that passes or
after ``max_attempts``. Every attempt is recorded (see ``rlvlmf.codegen.records``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rlvlmf.codegen.prompts import (
    TEMPLATE_VERSION,
    CodeExtractionError,
    GeneratedProgram,
    extract_code,
    feedback_message,
    initial_messages,
    parse_program,
)
from rlvlmf.codegen.records import CodegenRecorder, messages_record
from rlvlmf.codegen.sandbox import SandboxLimits
from rlvlmf.codegen.verify import VerificationConfig, VerificationReport, verify
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError
from rlvlmf.feedback.base import TransientBackendError
from rlvlmf.feedback.chat import ChatBackend, ChatMessage, ChatReply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodegenConfig:
    """How code is generated and checked.

    Attributes:
        max_attempts: Most replies asked for (the first plus regenerations), K.
        max_tokens: Upper bound on each reply's tokens.
        transient_retries: Retries of one request after a transient backend error.
        verification: Pass marks.
        limits: Sandbox limits during verification.
    """

    max_attempts: int = 3
    max_tokens: int = 4096
    transient_retries: int = 3
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    limits: SandboxLimits = field(default_factory=SandboxLimits)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_tokens < 64:
            raise ConfigError(f"max_tokens must be >= 64, got {self.max_tokens}")
        if self.transient_retries < 0:
            raise ConfigError(f"transient_retries must be >= 0, got {self.transient_retries}")


@dataclass
class Attempt:
    """One reply and its verdict.

    Attributes:
        index: 1-based attempt number.
        reply: The model's full text.
        code: The extracted code, or ``None`` when none could be read.
        report: The verification report (``None`` when no code was read).
        error: Why no code could be read, or ``None``.
        input_tokens: Prompt tokens billed.
        output_tokens: Completion tokens billed.
        latency_s: Time of the backend call, retries included.
    """

    index: int
    reply: str
    code: str | None = None
    report: VerificationReport | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.report is not None and self.report.passed

    def failures(self) -> list[str]:
        """Lines to send back to the model."""
        if self.error is not None:
            return [f"your code could not be used: {self.error}"]
        return self.report.failures() if self.report is not None else []


@dataclass
class CodegenResult:
    """Outcome of a session.

    Attributes:
        program: The verified program, or ``None`` when no attempt passed.
        attempts: Every attempt, in order.
        session_id: Id of the records, when recorded.
    """

    program: GeneratedProgram | None
    attempts: list[Attempt]
    session_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.program is not None


async def agenerate_reward_code(
    backend: ChatBackend,
    task: TaskDescription,
    success_trajs: Sequence[np.ndarray],
    random_trajs: Sequence[np.ndarray],
    *,
    frames: tuple[np.ndarray, np.ndarray] | None = None,
    config: CodegenConfig | None = None,
    recorder: CodegenRecorder | None = None,
) -> CodegenResult:
    """Ask ``backend`` for sub-goal reward code until a program passes verification.

    Args:
        backend: Any chat backend (only ``achat`` is used).
        task: Goal sentence and observation fields.
        success_trajs: Observations of successful episodes, each ``(T_i, obs_dim)``.
        random_trajs: Observations of random-policy episodes, each ``(T_j, obs_dim)``.
        frames: ``(start, goal)`` HxWx3 uint8 frames shown to the model, or ``None``.
        config: Attempts, tokens, pass marks, sandbox limits.
        recorder: Where to write the records; ``None`` records nothing.

    Returns:
        The verified program (or ``None``) and every attempt.

    Raises:
        BackendError: The backend failed for good (transient errors are retried first).
        ConfigError: No successful episodes to verify against.
    """
    config = config or CodegenConfig()
    if not success_trajs:
        raise ConfigError("code generation needs at least one successful episode to verify against")
    obs_dim = int(np.asarray(success_trajs[0]).shape[1])
    messages = initial_messages(task, obs_dim, frames)
    if recorder is not None:
        if frames is not None:
            recorder.save_frames({"start": frames[0], "goal": frames[1]})
        recorder.save(
            "session",
            {
                "task": asdict(task),
                "backend": backend.identity(),
                "template_version": TEMPLATE_VERSION,
                "config": asdict(config),
                "obs_dim": obs_dim,
                "n_success": len(success_trajs),
                "n_random": len(random_trajs),
            },
        )
    examples = [
        ("First observation of a successful episode", np.asarray(success_trajs[0])[0]),
        ("Last observation of a successful episode", np.asarray(success_trajs[0])[-1]),
    ]
    attempts: list[Attempt] = []
    new_messages: list[ChatMessage] = list(messages)
    for index in range(1, config.max_attempts + 1):
        reply, latency = await _chat(backend, messages, config)
        attempt = Attempt(
            index, reply.text, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens, latency_s=latency
        )
        try:
            if reply.refusal:
                raise CodeExtractionError(f"the model gave no answer ({reply.refusal})")
            program = parse_program(extract_code(reply.text))
            attempt.code = program.code
            attempt.report = await asyncio.to_thread(
                verify, program, success_trajs, random_trajs, config.verification, config.limits
            )
        except CodeExtractionError as exc:
            attempt.error = str(exc)
            program = None
        attempts.append(attempt)
        outcome = "passed" if attempt.passed else "; ".join(attempt.failures())
        log.info("codegen attempt %d/%d: %s", index, config.max_attempts, outcome)
        if recorder is not None:
            recorder.save(f"attempt-{index:02d}", _attempt_record(attempt, new_messages, reply, recorder))
        if attempt.passed:
            assert program is not None
            _finish(recorder, program, attempts)
            return CodegenResult(program, attempts, recorder.session_id if recorder else None)
        new_messages = [ChatMessage("assistant", (reply.text,)), feedback_message(attempt.failures(), examples)]
        messages = [*messages, *new_messages]
    _finish(recorder, None, attempts)
    return CodegenResult(None, attempts, recorder.session_id if recorder else None)


def generate_reward_code(*args: Any, **kwargs: Any) -> CodegenResult:
    """Synchronous ``agenerate_reward_code`` (same arguments)."""
    return asyncio.run(agenerate_reward_code(*args, **kwargs))


async def _chat(backend: ChatBackend, messages: Sequence[ChatMessage], config: CodegenConfig) -> tuple[ChatReply, float]:
    start = time.monotonic()
    for retry in range(config.transient_retries + 1):
        try:
            return await backend.achat(messages, max_tokens=config.max_tokens), time.monotonic() - start
        except TransientBackendError as exc:
            if retry == config.transient_retries:
                raise
            wait = exc.retry_after if exc.retry_after is not None else min(2.0**retry, 30.0)
            log.warning("codegen: transient backend error (%s), retrying in %.1f s", exc, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def _attempt_record(
    attempt: Attempt, sent: Sequence[ChatMessage], reply: ChatReply, recorder: CodegenRecorder
) -> dict[str, Any]:
    return {
        "index": attempt.index,
        # Only the messages added for this attempt; the conversation is their concatenation.
        "messages": messages_record(sent, recorder.image_files),
        "reply": attempt.reply,
        "refusal": reply.refusal,
        "reply_meta": reply.meta,
        "code": attempt.code,
        "error": attempt.error,
        "verification": attempt.report.to_dict() if attempt.report is not None else None,
        "passed": attempt.passed,
        "input_tokens": attempt.input_tokens,
        "output_tokens": attempt.output_tokens,
        "latency_s": attempt.latency_s,
    }


def _finish(recorder: CodegenRecorder | None, program: GeneratedProgram | None, attempts: list[Attempt]) -> None:
    if recorder is None:
        return
    if program is not None:
        recorder.save_program(program)
    recorder.save(
        "result",
        {
            "session_id": recorder.session_id,
            "passed": program is not None,
            "attempts": len(attempts),
            "program": asdict(program) if program is not None else None,
            "last_failures": attempts[-1].failures() if attempts else [],
            "input_tokens": sum(a.input_tokens for a in attempts),
            "output_tokens": sum(a.output_tokens for a in attempts),
        },
    )
