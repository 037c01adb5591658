"""Rewards that need no preference labels: CLIP-family scores and generated reward code.

Both are computed per transition as it is stored, from the frame (CLIP) or the observation
(code), and written to the replay buffer's learned-reward column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rlvlmf.codegen.sandbox import SandboxRejected
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.reward.vlm_rewards import ClipRewardConfig
from rlvlmf.training.config import ClipMode, CodeMode, TrainConfig


class FrameRewardSource(Protocol):
    """Reward of stored transitions without a learned model."""

    needs_frames: bool
    """Whether ``__call__`` reads rendered frames (then every step is rendered)."""

    def __call__(self, frames: np.ndarray | None, next_obs: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """``(N,)`` rewards from ``(N, H, W, 3)`` frames, ``(N, D)`` observations and the env's
        ``(N,)`` success signal (0 where the env reports none: never its dense reward)."""

    def close(self) -> None:
        """Release the model or sandbox."""


class ClipFrameReward:
    """Baumli et al. / VLM-RM / cosine reward of each frame from a CLIP or SigLIP model."""

    needs_frames = True

    def __init__(self, mode: ClipMode, config: ClipRewardConfig, task: TaskDescription) -> None:
        from rlvlmf.feedback.backends.clip import ClipScorer
        from rlvlmf.reward.vlm_rewards import ClipReward

        self.reward = ClipReward(ClipScorer(mode.model), task, config)

    def __call__(self, frames: np.ndarray | None, next_obs: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        assert frames is not None  # needs_frames: the loop draws a frame every step for this source
        return self.reward(frames)

    def close(self) -> None:
        pass


class CodeFrameReward:
    """VLM-CaR: dense sub-goal reward from verified generated code, plus the env's success signal.

    Envs without a success flag (dm_control, Gymnasium) contribute 0: adding their dense reward
    would train on the ground truth the code is meant to replace.
    """

    needs_frames = False

    def __init__(self, source: str, store_dir: str | Path) -> None:
        from rlvlmf.codegen.prompts import CodeExtractionError, parse_program
        from rlvlmf.codegen.records import load_program
        from rlvlmf.codegen.reward import CodeReward

        path = Path(source)
        if path.suffix == ".py":
            # A hand-written program: the user vouches for it, but it still runs sandboxed.
            if not path.is_file():
                raise UserError(f"reward code file {source!r} not found")
            try:
                program = parse_program(path.read_text())
            except CodeExtractionError as exc:
                raise UserError(f"reward code file {source}: {exc}") from None
        else:
            program = load_program(source, root=store_dir)  # a `rlvlmf codegen` result or session id
        self.reward = CodeReward(program)
        try:
            self.reward.sandbox.start()
        except SandboxRejected as exc:
            self.reward.close()
            raise UserError(f"the reward code was rejected by the sandbox: {exc}") from exc

    def __call__(self, frames: np.ndarray | None, next_obs: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        try:
            dense = self.reward(np.asarray(next_obs, np.float64))
        except SandboxRejected as exc:
            raise UserError(f"the reward code failed on a new observation ({exc}); fix the program, "
                            "then continue with `rlvlmf train --resume RUN`") from exc
        return dense + np.asarray(sparse, np.float32)

    def close(self) -> None:
        self.reward.close()


def make_frame_reward_source(config: TrainConfig, task: TaskDescription, store_dir: str | Path) -> FrameRewardSource:
    """The label-free reward a config asks for (``ClipMode`` or ``CodeMode``).

    A code source is a ``.py`` file, a JSON result of ``rlvlmf codegen --out``, or a codegen
    session id in the query store ``store_dir``.
    """
    if isinstance(config.reward, ClipMode):
        return ClipFrameReward(config.reward, config.clip, task)
    if isinstance(config.reward, CodeMode):
        return CodeFrameReward(config.reward.file, store_dir)
    raise ConfigError(f"reward {config.reward.flag!r} has no frame reward source")
