"""Checkpoints that survive ``kill -9`` at any moment, writing only what is new.

A checkpoint is a folder ``checkpoints/step_00012000/`` holding ``arrays.npz`` (small arrays:
buffer, pool and preference counters; plain numpy, no pickle), ``state.pt`` (agent, ensemble,
torch RNG), ``meta.json`` (counters, numpy RNG state) and ``segments.json``: the list of
append-only segment files in ``checkpoints/segments/`` that hold the replay buffer, the query
pool's frames, the query window and the preference pairs (``rlvlmf.training.segments``). A
checkpoint writes segments only for the transitions and pairs added and the rewards changed
since the previous one, so its time and bytes follow the new data, not the buffer's size. Its
folder is written under a temporary name and renamed into place when complete; then
``checkpoints/latest`` is atomically pointed at it. The previous checkpoint is kept (sharing all
but the newest segments), so a damaged latest one still leaves a way back; a segment is deleted
only once no kept checkpoint lists it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvlmf.errors import UserError
from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.training.buffer import ReplayBuffer
from rlvlmf.training.query_pool import QueryPool
from rlvlmf.training.run_files import PREFERENCES_FILE
from rlvlmf.training.segments import (
    BufferSegments,
    DamagedSegment,
    Manifest,
    PoolSegments,
    PreferenceSegments,
    SegmentRef,
    SegmentStore,
    WindowSegments,
    read_manifest,
    write_manifest,
)
from rlvlmf.training.state_window import StateWindow
from rlvlmf.utils.atomic import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

KEEP = 2
SEGMENTS_DIR = "segments"
"""Inside ``checkpoints/``: the segment files the checkpoints share."""


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
        self.segments = SegmentStore(self.root / SEGMENTS_DIR)
        # What the last checkpoint saved or loaded here holds: the next one writes only the rest.
        self._buffer_chain = BufferSegments()
        self._pool_chain = PoolSegments()
        self._preference_chain = PreferenceSegments()
        self._window_chain = WindowSegments()

    def save(self, step: int, *, arrays: dict[str, np.ndarray], torch_state: dict[str, Any], meta: dict[str, Any],
             preferences: PreferenceDataset | None, buffer: ReplayBuffer | None = None,
             pool: QueryPool | None = None, window: StateWindow | None = None) -> Path:
        """Write a complete checkpoint for ``step`` and make it the latest.

        Args:
            step: The env step (names the folder).
            arrays: Small numpy arrays saved whole.
            torch_state: Saved with ``torch.save``.
            meta: Saved as JSON.
            preferences: The preference data set, if any (as segments when ``buffer`` is given).
            buffer: The replay buffer, saved incrementally as segments.
            pool: The query pool (needs ``buffer``), its frames saved incrementally as segments.
            window: The query window (needs ``buffer``), its episodes saved incrementally as segments.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:09d}"
        final = self.root / name
        tmp = self.root / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        arrays = dict(arrays)
        if buffer is not None:
            buffer_refs = self._buffer_chain.save(buffer, self.segments)
            arrays.update(buffer.header())
            pool_refs: list[SegmentRef] = []
            preference_refs: list[SegmentRef] = []
            window_refs: list[SegmentRef] = []
            if pool is not None:
                pool_refs, pool_header = self._pool_chain.save(pool, buffer, self.segments)
                arrays.update(pool_header)
            if preferences is not None:
                preference_refs, preference_header = self._preference_chain.save(preferences, self.segments)
                arrays.update(preference_header)
            if window is not None:
                window_refs, window_header = self._window_chain.save(window, self.segments)
                arrays.update(window_header)
            write_manifest(tmp, Manifest(buffer_refs, pool_refs, preference_refs, window_refs))
        with atomic_open(tmp / "arrays.npz", "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
        with atomic_open(tmp / "state.pt", "wb") as handle:
            torch.save(torch_state, handle)
        if preferences is not None and buffer is None:
            preferences.save(tmp / PREFERENCES_FILE)
        atomic_write_text(tmp / "meta.json", json.dumps({"step": step, **meta}, default=_jsonable))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(self.root / "latest", name)
        for old in self.list()[:-KEEP]:
            shutil.rmtree(self.root / old, ignore_errors=True)
        self._sweep_segments()
        return final

    def _sweep_segments(self) -> None:
        """Delete segments no kept checkpoint lists (also those of a save a kill interrupted)."""
        keep: set[str] = set()
        for name in self.list():
            try:
                manifest = read_manifest(self.root / name)
            except (OSError, ValueError, TypeError, KeyError) as err:
                # Which files it needs is unknown: keep every file rather than guess.
                logger.warning("checkpoint %s has an unreadable segment list (%s); no segment is deleted", name, err)
                return
            if manifest is not None:
                keep.update(manifest.files())
        self.segments.sweep(keep)

    def _listed_segments(self, name: str) -> set[str] | None:
        try:
            manifest = read_manifest(self.root / name)
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return set() if manifest is None else manifest.files()

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

    def load(self, name: str | None = None, *, buffer: ReplayBuffer | None = None,
             pool: QueryPool | None = None, window: StateWindow | None = None) -> LoadedCheckpoint:
        """Read the latest (or the named) checkpoint, restoring ``buffer``, ``pool`` and ``window`` in place.

        Checkpoints written before segments (the whole buffer in ``arrays.npz``) load too.

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
            manifest = read_manifest(directory)
            preferences = None
            if manifest is None:  # saved before segments: the buffer and pool whole in arrays, preferences.npz
                prefs_path = directory / PREFERENCES_FILE
                preferences = PreferenceDataset.load(prefs_path) if prefs_path.exists() else None
                if buffer is not None:
                    buffer.load_state_dict(arrays)
                if pool is not None:
                    pool.load_state_dict(arrays)
                if window is not None:
                    window.load_state_dict(arrays)
                self._buffer_chain, self._pool_chain = BufferSegments(), PoolSegments()
                self._preference_chain, self._window_chain = PreferenceSegments(), WindowSegments()
            else:
                if buffer is not None:
                    self._buffer_chain.load(buffer, self.segments, manifest.buffer, arrays)
                    if pool is not None:
                        self._pool_chain.load(pool, buffer, self.segments, manifest.pool, arrays)
                if window is not None and "window_steps" in arrays:  # saved whole, before window segments
                    window.load_state_dict(arrays)
                    self._window_chain = WindowSegments()
                elif window is not None:
                    self._window_chain.load(window, self.segments, manifest.window, arrays)
                if "preferences_meta" in arrays:
                    preferences = self._preference_chain.load(self.segments, manifest.preferences, arrays)
        except Exception as err:  # noqa: BLE001 - a damaged file can fail in any of torch's/numpy's layers
            others = [n for n in self.list() if n < name]  # names are zero-padded steps
            left = "no earlier checkpoint is left"
            if isinstance(err, DamagedSegment) and others:
                # Checkpoints share segments: only one that does not list the damaged one helps.
                others = [n for n in others if err.file not in (self._listed_segments(n) or {err.file})]
                left = "the earlier checkpoints need that segment too"
            hint = (f"resume from an earlier one with --checkpoint {others[-1]}" if others
                    else f"{left}; start the run again under a new name")
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
