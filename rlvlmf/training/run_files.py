"""The run folder's layout: the one place that knows its file names.

Everything that reads or writes a run folder (the driver, ``rlvlmf train``, sweeps, reports)
goes through :class:`RunFiles`, so a renamed file is renamed once.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one run folder.

    Args:
        root: The run folder.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """The resolved config the run was started with."""
        return self.root / "config.json"

    @property
    def summary(self) -> Path:
        """Written once, when the run reaches its last step."""
        return self.root / "summary.json"

    @property
    def metrics(self) -> Path:
        """One row per logged step (episodes, feedback rounds, evaluations)."""
        return self.root / "metrics.csv"

    @property
    def evals(self) -> Path:
        """One JSON line per evaluation."""
        return self.root / "eval.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def reward_model(self) -> Path:
        """The final reward ensemble (also exported to ``reward_models/``)."""
        return self.root / "reward_model.pt"

    @property
    def preferences(self) -> Path:
        """The final preference data set."""
        return self.root / PREFERENCES_FILE

    @property
    def lock(self) -> Path:
        """Held by the one process that trains in this folder."""
        return self.root / ".lock"

    def eval_video(self, step: int) -> Path:
        return self.videos / f"eval_{step:08d}.gif"

    def results(self) -> list[str]:
        """Names of the result files and folders that exist here (folders end in ``/``)."""
        paths = (self.summary, self.metrics, self.evals, self.videos, self.tensorboard, self.reward_model,
                 self.preferences, self.checkpoints)
        return [p.name + ("/" if p.is_dir() else "") for p in paths if p.exists()]

    def is_run(self) -> bool:
        """Whether the folder holds a run (it has a config)."""
        return self.config.exists()

    def is_complete(self) -> bool:
        return self.summary.exists()

    def is_started(self) -> bool:
        """Whether a run here got as far as logging or checkpointing (then only ``--resume`` continues it)."""
        return self.metrics.exists() or (self.checkpoints.is_dir() and any(self.checkpoints.iterdir()))

    def clear_unstarted(self) -> None:
        """Remove what a start that never reached its first logged step left, so the folder can be reused.

        Raises:
            ValueError: The run here has started (``is_started``); its files are left alone.
        """
        if self.is_started():
            raise ValueError(f"{self.root} holds a started run")
        for path in (self.config, self.evals):
            path.unlink(missing_ok=True)
        for folder in (self.tensorboard, self.videos, self.checkpoints):
            shutil.rmtree(folder, ignore_errors=True)


#: Inside the run folder and inside each checkpoint.
PREFERENCES_FILE = "preferences.npz"
