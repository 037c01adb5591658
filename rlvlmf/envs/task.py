"""What a task asks for, in words a VLM or a CLIP model can use."""

from __future__ import annotations

from dataclasses import dataclass

from rlvlmf.errors import ConfigError


@dataclass(frozen=True)
class TaskDescription:
    """The text side of a task.

    Attributes:
        name: Short task name, e.g. ``"drawer-open"``.
        goal: The goal sentence used in RL-VLM-F prompts, phrased as in the paper:
            ``"to open the drawer"`` (it follows "The goal is ...").
        positive_phrases: Descriptions of a frame where the goal is reached, for CLIP-style
            scoring (``"a drawer that is fully open"``). The first one is the main goal phrase.
        negative_phrases: Descriptions of frames where it is not (``"a closed drawer"``), the
            baseline of VLM-RM and the contrast set of Baumli et al.
        observation_doc: Documentation of the flat observation vector (one line per field),
            shown to a VLM that writes reward code. Empty when unknown.
    """

    name: str
    goal: str
    positive_phrases: tuple[str, ...]
    negative_phrases: tuple[str, ...] = ()
    observation_doc: str = ""

    def __post_init__(self) -> None:
        if not self.goal.strip():
            raise ConfigError(f"task {self.name!r}: the goal sentence is empty")
        if not self.positive_phrases:
            raise ConfigError(f"task {self.name!r}: give at least one positive phrase")
