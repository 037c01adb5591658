"""Checkpoints that survive ``kill -9`` at any moment.

A checkpoint is a folder ``checkpoints/step_00012000/`` holding ``arrays.npz`` (replay buffer,
query pool: plain numpy, no pickle), ``state.pt`` (agent, ensemble, torch RNG), ``meta.json``
(counters, numpy RNG state) and ``preferences.npz``. It is written under a temporary name and
renamed into place when complete; then ``checkpoints/latest`` is atomically pointed at it.
The previous checkpoint is kept, so a damaged latest one still leaves a way back.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvlmf.errors import UserError
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.training.run_files import PREFERENCES_FILE
from rlvlmf.utils.atomic import atomic_open, atomic_write_text

KEEP = 2


@dataclass
class LoadedCheckpoint:
    """What ``CheckpointManager.load`` read."""

    directory: Path
    step: int
    arrays: dict[str, np.ndarray]
    torch_state: dict[str, Any]
    meta: dict[str, Any]
    preferences: PreferenceDataset | None


class CheckpointManager:
    """Writes and reads the checkpoints of one run folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def save(self, step: int, *, arrays: dict[str, np.ndarray], torch_state: dict[str, Any], meta: dict[str, Any],
             preferences: PreferenceDataset | None) -> Path:
        """Write a complete checkpoint for ``step`` and make it the latest."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:09d}"
        final = self.root / name
        tmp = self.root / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with atomic_open(tmp / "arrays.npz", "wb") as handle:
            np.savez(handle, **arrays)
        with atomic_open(tmp / "state.pt", "wb") as handle:
            torch.save(torch_state, handle)
        if preferences is not None:
            preferences.save(tmp / PREFERENCES_FILE)
        atomic_write_text(tmp / "meta.json", json.dumps({"step": step, **meta}, default=_jsonable))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(self.root / "latest", name)
        for old in self.list()[:-KEEP]:
            shutil.rmtree(self.root / old, ignore_errors=True)
        return final

    def list(self) -> list[str]:
        """Complete checkpoints, oldest first."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step_"))

    def latest(self) -> str | None:
        """Name of the latest complete checkpoint, or ``None`` for a run that has none yet."""
        pointer = self.root / "latest"
        if pointer.exists():
            name = pointer.read_text().strip()
            if (self.root / name).is_dir():
                return name
        names = self.list()
        return names[-1] if names else None

    def load_torch_state(self, name: str | None = None) -> tuple[str, dict[str, Any]]:
        """Only the torch state (agent, ensemble) of the latest or the named checkpoint: what a
        trained policy needs, without reading the replay buffer.

        Returns:
            The checkpoint's name and its torch state.

        Raises:
            UserError: No such checkpoint, or a damaged one.
        """
        name = name or self.latest()
        if name is None:
            raise UserError(f"no checkpoint in {self.root}; the run saved none yet (see checkpoint_every)")
        path = self.root / name / "state.pt"
        if not path.is_file():
            known = ", ".join(self.list()) or "none"
            raise UserError(f"no checkpoint {name!r} in {self.root}; checkpoints: {known}")
        try:
            return name, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged file can fail in any of torch's layers
            raise UserError(f"checkpoint {path} is damaged ({type(err).__name__}: {err})") from err

    def load(self, name: str | None = None) -> LoadedCheckpoint:
        """Read the latest (or the named) checkpoint.

        Raises:
            UserError: No checkpoint, or a damaged one; the message names the older
                checkpoints to resume from instead.
        """
        name = name or self.latest()
        if name is None:
            raise UserError(f"no checkpoint in {self.root}; start the run again without --resume")
        directory = self.root / name
        try:
            with np.load(directory / "arrays.npz", allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            torch_state = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
            meta = json.loads((directory / "meta.json").read_text())
            prefs_path = directory / PREFERENCES_FILE
            preferences = PreferenceDataset.load(prefs_path) if prefs_path.exists() else None
        except Exception as err:  # noqa: BLE001 - a damaged file can fail in any of torch's/numpy's layers
            others = [n for n in self.list() if n < name]  # names are zero-padded steps
            hint = (f"resume from an earlier one with --checkpoint {others[-1]}" if others
                    else "no earlier checkpoint is left; start the run again under a new name")
            raise UserError(f"checkpoint {directory} is damaged ({type(err).__name__}: {err}); {hint}") from err
        return LoadedCheckpoint(directory, int(meta["step"]), arrays, torch_state, meta, preferences)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
