"""Where training scalars go: one CSV for people and scripts, TensorBoard for curves."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlvlmf.training.run_files import RunFiles
from rlvlmf.utils.atomic import atomic_write_text


class MetricsLogger:
    """Append scalars to ``metrics.csv`` and TensorBoard event files in a run folder.

    Each ``log`` call writes one CSV row keyed by ``step``; columns are the union of all keys
    seen (the CSV is rewritten when a new key appears, which happens a handful of times per
    run). Keys are namespaced like CleanRL's (``train/episode_return``, ``reward/accuracy``).

    Args:
        run_dir: The run folder.
        resume_step: When resuming, rows logged after this step (written after the last
            checkpoint, so they will be logged again) are dropped.
        tensorboard: Also write TensorBoard events.
    """

    def __init__(self, run_dir: str | Path, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = RunFiles(Path(run_dir)).metrics
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._columns: list[str] = ["step"]
        self._rows: list[dict[str, Any]] = []
        if self.path.exists():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self._columns = list(reader.fieldnames or ["step"])
                self._rows = [row for row in reader if resume_step is None or int(float(row["step"])) <= resume_step]
            self._rewrite()
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(RunFiles(Path(run_dir)).tensorboard), purge_step=resume_step)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Record ``values`` at ``step``."""
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        new_columns = [k for k in row if k not in self._columns]
        self._rows.append(row)
        if new_columns:
            self._columns.extend(new_columns)
            self._rewrite()
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, self._columns).writerow(row)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), step)

    def _rewrite(self) -> None:
        # Atomic: a process killed mid-rewrite must not leave a truncated history behind.
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self._columns)
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.path, text.getvalue())

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
