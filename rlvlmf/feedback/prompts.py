"""The RL-VLM-F prompts, as versioned templates filled with a task's goal sentence.

Two-stage protocol (the paper's default): stage 1 shows both frames and asks what each
shows and whether they differ in achieving the goal; stage 2 is text only, gives the model
its own stage-1 analysis and asks for a single label. The one-stage variant (the paper's
ablation) asks everything in one call and reads the label off the last line.

The template text is hashed into ``template_version``, which enters every chat backend's
``identity()`` and therefore the query-store key: editing a template can never make the
store serve answers given to a different prompt.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from rlvlmf.feedback.images import side_by_side

Mode = Literal["two-stage", "one-stage"]
Part = str | np.ndarray
"""A message part: text, or an HxWx3 uint8 image."""

LABEL_CHOICES: tuple[str, ...] = ("0", "1", "-1")
"""The answers stage 2 (and the one-stage variant) may give, in the paper's convention."""

IMAGE_LABELS: tuple[str, str] = ("Image 1", "Image 2")
"""How the two frames are named to the model, in display order."""

# --- templates ---------------------------------------------------------------------------
# `{goal}` is the task's goal sentence without its final period ("to open the drawer").

TWO_IMAGES_INTRO = "Consider the following two images:"

COMPOSITE_INTRO = (
    "Consider the following picture. It shows two images side by side, each with its name "
    "written above it: Image 1 on the left and Image 2 on the right."
)

QUESTIONS = (
    "1. What is shown in Image 1?\n"
    "2. What is shown in Image 2?\n"
    "3. The goal is {goal}. Is there any difference between Image 1 and Image 2 in terms of "
    "achieving the goal?"
)

STAGE2 = (
    "Based on the text below, which answers the questions:\n"
    "{questions}\n"
    "\n"
    "Text:\n"
    "{analysis}\n"
    "\n"
    "Is the goal better achieved in Image 1 or Image 2?\n"
    "Reply a single line of 0 if the goal is better achieved in Image 1, or 1 if it is better "
    "achieved in Image 2.\n"
    "Reply -1 if the text is unsure or there is no difference."
)

ONE_STAGE_SUFFIX = (
    "\n"
    "Then decide: is the goal better achieved in Image 1 or Image 2? End your reply with a "
    "last line that is exactly one of:\n"
    "Answer: 0   (the goal is better achieved in Image 1)\n"
    "Answer: 1   (the goal is better achieved in Image 2)\n"
    "Answer: -1  (you are unsure or there is no difference)"
)


def template_version(mode: Mode, composite: bool) -> str:
    """A short, stable version of the templates a protocol sends.

    Args:
        mode: ``"two-stage"`` or ``"one-stage"``.
        composite: Whether both frames go in one side-by-side picture.

    Returns:
        ``"<mode>[-composite]-<12 hex digits>"``; the digits hash every template used, so any
        edit to the wording changes the version (and the query-store key).
    """
    texts = [COMPOSITE_INTRO if composite else TWO_IMAGES_INTRO, *IMAGE_LABELS, QUESTIONS]
    texts += [STAGE2] if mode == "two-stage" else [ONE_STAGE_SUFFIX]
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    return f"{mode}{'-composite' if composite else ''}-{digest}"


def goal_clause(goal: str) -> str:
    """The goal sentence as it follows "The goal is": trimmed, without a final period."""
    return goal.strip().rstrip(".").strip()


def questions(goal: str) -> str:
    """The three stage-1 questions for a goal sentence such as ``"to open the drawer"``."""
    return QUESTIONS.format(goal=goal_clause(goal))


def image_parts(first: np.ndarray, second: np.ndarray, *, composite: bool) -> tuple[Part, ...]:
    """The intro and the two frames, labelled "Image 1" and "Image 2".

    Args:
        first: HxWx3 uint8 frame shown as Image 1.
        second: HxWx3 uint8 frame shown as Image 2.
        composite: Send one side-by-side picture (names drawn above each half) instead of
            two separate images, for providers or models that handle one image better.

    Returns:
        Text and image parts, in order.
    """
    if composite:
        return (COMPOSITE_INTRO, side_by_side(first, second, labels=IMAGE_LABELS))
    return (TWO_IMAGES_INTRO, f"{IMAGE_LABELS[0]}:", first, f"{IMAGE_LABELS[1]}:", second)


def stage1_parts(first: np.ndarray, second: np.ndarray, goal: str, *, composite: bool = False) -> tuple[Part, ...]:
    """Stage 1 of the two-stage protocol: both frames, then the three questions."""
    return (*image_parts(first, second, composite=composite), questions(goal))


def stage2_text(analysis: str, goal: str) -> str:
    """Stage 2 of the two-stage protocol: the stage-1 analysis and the label question (text only)."""
    return STAGE2.format(questions=questions(goal), analysis=analysis.strip())


def one_stage_parts(first: np.ndarray, second: np.ndarray, goal: str, *, composite: bool = False) -> tuple[Part, ...]:
    """The one-stage variant: frames, questions and the label request in one message."""
    return (*image_parts(first, second, composite=composite), questions(goal) + ONE_STAGE_SUFFIX)
