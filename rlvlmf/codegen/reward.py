"""Dense reward from verified sub-goal checkers, computed in the sandbox (VLM-CaR).

The dense reward of an observation is the fraction of checkers (sub-goals, then the goal)
that fire on it; the train loop adds the env's sparse success reward, as in the paper. No VLM
is called during training: only the sandboxed program runs.
"""

from __future__ import annotations

from types import TracebackType

import numpy as np

from rlvlmf.codegen.prompts import GeneratedProgram
from rlvlmf.codegen.sandbox import Sandbox, SandboxLimits


class CodeReward:
    """Callable ``(N, obs_dim) -> (N,)`` reward from a verified program.

    Args:
        program: Verified sub-goal and goal functions.
        limits: Sandbox limits during training.
        fire_threshold: A checker counts as satisfied when its value is >= this.

    Raises:
        SandboxRejected: From ``__call__`` when a checker breaks a limit or raises on new
            observations (the train loop decides whether to stop or to drop the program).
    """

    def __init__(self, program: GeneratedProgram, limits: SandboxLimits | None = None, fire_threshold: float = 0.5) -> None:
        self.program = program
        self.fire_threshold = fire_threshold
        self.sandbox = Sandbox(program.code, program.function_names, limits)

    def __enter__(self) -> CodeReward:
        self.sandbox.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def components(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Each checker's satisfied flags, ``{name: (N,) float 0/1}``, sub-goals then goal."""
        return {
            name: (values >= self.fire_threshold).astype(np.float64)
            for name, values in self.sandbox.call_all(obs).items()
        }

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Dense reward of a batch: fraction of checkers satisfied.

        Args:
            obs: ``(N, obs_dim)`` observations.

        Returns:
            ``(N,)`` float32 rewards in [0, 1].
        """
        flags = np.stack(list(self.components(obs).values()))
        return flags.mean(axis=0).astype(np.float32)

    def close(self) -> None:
        """Stop the sandbox worker."""
        self.sandbox.close()
