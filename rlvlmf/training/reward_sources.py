"""Rewards that need no preference labels: CLIP-family scores and generated reward code.

Both are computed per transition as it is stored, from the frame (CLIP) or the observation
(code), and written to the replay buffer's learned-reward column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rlvlmf.envs.task import TaskDescription
from rlvlmf.codegen.sandbox import SandboxRejected
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.registry import parse_spec
from rlvlmf.training.config import TrainConfig


class FrameRewardSource(Protocol):
    """Reward of stored transitions without a learned model."""

    needs_frames: bool
    """Whether ``__call__`` reads rendered frames (then every step is rendered)."""

    def __call__(self, frames: np.ndarray | None, next_obs: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """``(N,)`` rewards from ``(N, H, W, 3)`` frames, ``(N, D)`` observations and the env's
        ``(N,)`` sparse reward (success where the env reports it)."""

    def close(self) -> None:
        """Release the model or sandbox."""


class ClipFrameReward:
    """Baumli et al. / VLM-RM / cosine reward of each frame from a CLIP or SigLIP model."""

    needs_frames = True

    def __init__(self, config: TrainConfig, task: TaskDescription) -> None:
        from rlvlmf.feedback.backends.clip import ClipScorer
        from rlvlmf.reward.vlm_rewards import ClipReward

        spec = parse_spec(config.backend)
        if spec.family != "clip" or not spec.model:
            raise ConfigError(f"--reward clip needs --backend clip:<model id or path>, got {config.backend!r}")
        self.reward = ClipReward(ClipScorer(spec.model), task, config.clip)

    def __call__(self, frames: np.ndarray | None, next_obs: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        return self.reward(frames)

    def close(self) -> None:
        pass


class CodeFrameReward:
    """VLM-CaR: dense sub-goal reward from verified generated code, plus the sparse env reward."""

    needs_frames = False

    def __init__(self, source: str, store_dir: str | Path) -> None:
        from rlvlmf.codegen.prompts import parse_program
        from rlvlmf.codegen.records import load_program
        from rlvlmf.codegen.reward import CodeReward

        path = Path(source)
        if path.suffix == ".py":
            # A hand-written program: the user vouches for it, but it still runs sandboxed.
            if not path.is_file():
                raise UserError(f"reward code file {source!r} not found")
            program = parse_program(path.read_text())
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
    """The label-free reward a config asks for (``reward="clip"`` or ``"code:<source>"``).

    A code source is a ``.py`` file, a JSON result of ``rlvlmf codegen --out``, or a codegen
    session id in the query store ``store_dir``.
    """
    if config.reward == "clip":
        return ClipFrameReward(config, task)
    if config.reward.startswith("code:"):
        return CodeFrameReward(config.reward.split(":", 1)[1], store_dir)
    raise ConfigError(f"reward {config.reward!r} has no frame reward source")
