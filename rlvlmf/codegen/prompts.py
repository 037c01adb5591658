"""Prompts asking a chat VLM to write reward code (VLM-CaR), and reading the code back.

The model sees the goal sentence, the documented observation fields and, when given, a start
frame and a goal frame. It decomposes the task into ordered sub-goals and writes one checker
function per sub-goal (``subgoal_1``, ``subgoal_2``...) and one for the whole task (``goal``),
each mapping an observation batch ``(N, obs_dim)`` to ``(N,)`` booleans, in one fenced block.
When verification fails, the failure report goes back as the next user message.

Template text is hashed into ``TEMPLATE_VERSION``, stored with every attempt.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.feedback.chat import ChatMessage, Part

GOAL_FUNCTION = "goal"
"""Name of the function that checks the whole task."""

SUBGOAL_PATTERN = re.compile(r"^subgoal_(\d+)(?:_\w*)?$")
"""Sub-goal functions: ``subgoal_<k>`` optionally followed by ``_<words>``; ordered by ``k``."""

SYSTEM = (
    "You write reward functions for reinforcement learning in Python. Your functions read the "
    "agent's observation vector and tell whether a stage of the task has been reached."
)

TASK = """The goal of the task is {goal}.

At every step the agent observes a flat vector of {obs_dim} floats. Its fields:
{observation_doc}
{frames_note}
First decompose the task into a few (2 to 5) sub-goals that a successful episode reaches in \
order, the last one being the goal itself. Then write one Python function per sub-goal, named \
subgoal_1, subgoal_2, ... in order, and one function named goal that tells whether the whole \
task is achieved.

Rules for the code:
- Each function has the signature `def name(obs: np.ndarray) -> np.ndarray`. `obs` is a batch \
of observations with shape (N, {obs_dim}); return a boolean array of shape (N,), True where \
the sub-goal holds at that step.
- Vectorise over the batch with numpy; do not loop over N.
- Only `import numpy as np` and `import math` are allowed. No other imports, no files, \
network or system calls, no classes, no attributes starting with an underscore, no getattr, \
eval or exec. The code runs in a sandbox with a time limit per call.
- Start each function with a one-line docstring that states its sub-goal.

Reply with the decomposition in a few lines, then all the code in ONE fenced ```python block."""

FRAMES_NOTE = "\nThe first image shows the start of an episode; the second shows the goal reached.\n"

FEEDBACK = """Your code failed verification on recorded episodes:
{failures}
{examples}
Fix the code and reply with the complete corrected code (all functions) in ONE fenced \
```python block."""

EXAMPLE = "{what} (rounded): {values}"

TEMPLATE_VERSION = hashlib.sha1("\x00".join((SYSTEM, TASK, FRAMES_NOTE, FEEDBACK, EXAMPLE)).encode()).hexdigest()[:12]


class CodeExtractionError(ValueError):
    """A reply held no usable code: no fenced block, a syntax error, or no ``goal`` function."""


@dataclass(frozen=True)
class GeneratedProgram:
    """Reward code as the model wrote it, with its checker functions found.

    Attributes:
        code: The Python source.
        subgoals: Sub-goal function names, in order.
        goal: The goal function's name.
    """

    code: str
    subgoals: tuple[str, ...]
    goal: str = GOAL_FUNCTION

    @property
    def function_names(self) -> tuple[str, ...]:
        """Sub-goals in order, then the goal."""
        return (*self.subgoals, self.goal)


def initial_messages(
    task: TaskDescription,
    obs_dim: int,
    frames: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[ChatMessage]:
    """The first request: task, observation fields and, optionally, start and goal frames.

    Args:
        task: Gives the goal sentence and ``observation_doc``.
        obs_dim: Length of the flat observation vector.
        frames: ``(start, goal)`` HxWx3 uint8 frames, or ``None`` to send text only.

    Returns:
        A system message and one user message.
    """
    doc = task.observation_doc.strip() or f"(undocumented: {obs_dim} floats)"
    text = TASK.format(
        goal=task.goal.rstrip(". "),
        obs_dim=obs_dim,
        observation_doc=doc,
        frames_note=FRAMES_NOTE if frames is not None else "",
    )
    parts: tuple[Part, ...] = (text,)
    if frames is not None:
        start, goal = frames
        parts = ("Start of an episode:", start, "Goal reached:", goal, text)
    return [ChatMessage("system", (SYSTEM,)), ChatMessage("user", parts)]


def feedback_message(failures: Sequence[str], examples: Sequence[tuple[str, np.ndarray]] = ()) -> ChatMessage:
    """The user message sending a verification failure back.

    Args:
        failures: One line per failed check (from ``VerificationReport.failures``).
        examples: ``(what, obs)`` pairs shown as rounded vectors, e.g. the last observation of
            a successful episode, so the model can correct its thresholds.
    """
    lines = "\n".join(f"- {f}" for f in failures)
    shown = "\n".join(
        EXAMPLE.format(what=what, values=np.array2string(np.round(obs, 3), separator=", ", max_line_width=10_000))
        for what, obs in examples
    )
    return ChatMessage("user", (FEEDBACK.format(failures=lines, examples=shown + "\n" if shown else ""),))


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code of a reply: the longest ```python block, else the longest unlabelled block.

    Raises:
        CodeExtractionError: The reply has no fenced code block.
    """
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    plain = [body for lang, body in blocks if not lang]
    candidates = python or plain
    if not candidates:
        raise CodeExtractionError("the reply has no fenced ```python code block")
    return max(candidates, key=len).strip() + "\n"


def parse_program(code: str) -> GeneratedProgram:
    """Find the sub-goal and goal functions defined at the top level of ``code``.

    Raises:
        CodeExtractionError: A syntax error, or no function named ``goal``.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise CodeExtractionError(f"syntax error: {exc.msg} (line {exc.lineno})") from None
    defined = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    if GOAL_FUNCTION not in defined:
        raise CodeExtractionError(f"no top-level function named {GOAL_FUNCTION!r}; defined: {', '.join(defined) or 'none'}")
    numbered = sorted((int(m.group(1)), name) for name in defined if (m := SUBGOAL_PATTERN.match(name)))
    return GeneratedProgram(code=code, subgoals=tuple(name for _, name in numbered))
