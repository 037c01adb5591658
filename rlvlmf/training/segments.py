"""Append-only segment files: each checkpoint writes only what changed since the previous one.

A replay buffer of a 1M-step image run holds ~12.6 GB; rewriting it at every checkpoint wrote
it a hundred times over a run. Instead the buffer is saved as segments in ``checkpoints/segments/``,
files that are written once and never changed:

- ``transitions``: every array of the transitions added since the previous checkpoint (stream
  positions ``[start, end)``), their learned rewards included;
- ``rewards``: learned rewards that changed since the previous checkpoint (a relabel changes
  them all), one float32 per step over the changed range;
- ``pool``: the query pool's full-size frames that entered it since the previous checkpoint;
- ``labels``: the preference pairs labelled since the previous checkpoint (pairs never change);
- ``window``: the query window's simulator states of episodes that ended (or began) since.

A checkpoint lists the segments it needs (``segments.json``); applying them in order rebuilds
the buffer, the pool, the query window and the preference data exactly. Checkpoints share
segments, and a segment is deleted only when no remaining checkpoint lists it. Positions in the
buffer's stream identify transitions (slot = position mod capacity), so segments of transitions
the ring has since overwritten drop out.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rlvlmf.reward.preferences import PreferenceDataset
from rlvlmf.training.buffer import ReplayBuffer
from rlvlmf.training.query_pool import QueryPool
from rlvlmf.training.state_window import StateWindow
from rlvlmf.utils.atomic import atomic_open

logger = logging.getLogger(__name__)

MANIFEST_FILE = "segments.json"
"""Inside each checkpoint folder: the segments it needs, in the order to apply them."""
_MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class SegmentRef:
    """One segment file as a checkpoint's manifest lists it.

    Attributes:
        file: File name inside the segments folder.
        kind: ``"transitions"``, ``"rewards"``, ``"pool"`` or ``"labels"``.
        start: First stream position covered (transitions or pairs ever added; ``pool``: 0).
        end: One past the last stream position covered (``pool``: 0).
        bytes: The file's size, checked before reading (a truncated copy fails fast).
    """

    file: str
    kind: str
    start: int
    end: int
    bytes: int


class DamagedSegment(Exception):
    """A segment file is missing, truncated or unreadable."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"segment {file}: {reason}")
        self.file = file


class SegmentStore:
    """The segments folder: write-once ``.npz`` files (uncompressed, no pickle)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def write(self, kind: str, start: int, end: int, arrays: dict[str, np.ndarray]) -> SegmentRef:
        """Write a new segment atomically under a name never used before."""
        self.root.mkdir(parents=True, exist_ok=True)
        # A random suffix: a run resumed from an older checkpoint writes the same ranges again,
        # and must not replace a file that a newer checkpoint still lists.
        name = f"{kind}-{start:012d}-{end:012d}-{secrets.token_hex(4)}.npz"
        with atomic_open(self.root / name, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
        return SegmentRef(name, kind, start, end, (self.root / name).stat().st_size)

    def read(self, ref: SegmentRef) -> dict[str, np.ndarray]:
        """The arrays of a segment.

        Raises:
            DamagedSegment: The file is missing, has another size than written, or does not load.
        """
        path = self.root / ref.file
        try:
            size = path.stat().st_size
            if size != ref.bytes:
                raise DamagedSegment(ref.file, f"{size} bytes, {ref.bytes} were written")
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except DamagedSegment:
            raise
        except Exception as err:  # zip, numpy and OS errors all mean the same here
            raise DamagedSegment(ref.file, f"{type(err).__name__}: {err}") from err

    def sweep(self, keep: set[str]) -> int:
        """Delete the segments no checkpoint lists any more; returns how many were deleted."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.iterdir():
            if path.suffix == ".npz" and path.name not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class Manifest(NamedTuple):
    """The segments one checkpoint needs, per thing they rebuild, each list in the order to apply."""

    buffer: list[SegmentRef]
    pool: list[SegmentRef]
    preferences: list[SegmentRef]
    window: list[SegmentRef] = []

    def files(self) -> set[str]:
        """Every segment file listed."""
        return {ref.file for refs in self for ref in refs}


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``segments.json`` into a checkpoint folder being assembled."""
    lists = {key: [asdict(r) for r in refs] for key, refs in manifest._asdict().items()}
    content = {"format": _MANIFEST_FORMAT, **lists}
    with atomic_open(directory / MANIFEST_FILE, "w") as handle:
        json.dump(content, handle)


def read_manifest(directory: Path) -> Manifest | None:
    """The segments a checkpoint lists, or ``None`` for one saved before segments.

    Raises:
        ValueError: The manifest exists but is not one this version wrote.
    """
    path = directory / MANIFEST_FILE
    if not path.exists():
        return None
    content = json.loads(path.read_text())
    if content.get("format") != _MANIFEST_FORMAT:
        raise ValueError(f"{path} has format {content.get('format')!r}, expected {_MANIFEST_FORMAT}")
    return Manifest(*([SegmentRef(**r) for r in content.get(key, [])] for key in Manifest._fields))


class BufferSegments:
    """What of one replay buffer is in segments already, and writing what is not."""

    def __init__(self) -> None:
        self.refs: list[SegmentRef] = []
        self.saved_end = 0
        """Stream position up to which transitions are in ``refs``."""
        self._saved_rewards: np.ndarray | None = None  # learned rewards by slot, as last saved

    def save(self, buffer: ReplayBuffer, store: SegmentStore) -> list[SegmentRef]:
        """Write the new transitions and the changed rewards; returns the refs that rebuild the buffer."""
        total, oldest = buffer.total_added, buffer.oldest
        refs = [r for r in self.refs if r.end > oldest]  # the rest was overwritten by the ring
        if self._saved_rewards is not None and self.saved_end > oldest:
            positions = np.arange(oldest, self.saved_end)
            slots = positions % buffer.capacity
            # Bitwise, so a NaN or a -0.0 is a change like any other.
            now, saved = buffer.learned_reward[slots], self._saved_rewards[slots]
            changed = np.flatnonzero(now.view(np.uint32) != saved.view(np.uint32))
            if changed.size:
                start, end = int(positions[changed[0]]), int(positions[changed[-1]]) + 1
                values = buffer.learned_reward[np.arange(start, end) % buffer.capacity]
                refs.append(store.write("rewards", start, end, {"learned_reward": values}))
        first_new = max(self.saved_end, oldest)
        if total > first_new:
            refs.append(store.write("transitions", first_new, total, buffer.transitions(first_new, total)))
        self.refs = _drop_superseded_rewards(refs, oldest)
        self.saved_end = total
        self._saved_rewards = buffer.learned_reward.copy()
        return list(self.refs)

    def load(self, buffer: ReplayBuffer, store: SegmentStore, refs: list[SegmentRef],
             header: dict[str, np.ndarray]) -> None:
        """Rebuild ``buffer`` from its header and segments, and continue the chain from them.

        Raises:
            DamagedSegment: A listed segment cannot be read.
            UserError: The header belongs to a buffer of other sizes.
        """
        buffer.load_header(header)
        oldest = buffer.oldest
        for ref in refs:
            arrays = store.read(ref)
            if ref.kind == "transitions":
                buffer.put_transitions(ref.start, arrays, oldest)
            elif ref.kind == "rewards":
                buffer.put_rewards(ref.start, arrays["learned_reward"], oldest)
            else:
                raise DamagedSegment(ref.file, f"unknown segment kind {ref.kind!r} in a buffer manifest")
        self.refs = list(refs)
        self.saved_end = buffer.total_added
        self._saved_rewards = buffer.learned_reward.copy()


def _drop_superseded_rewards(refs: list[SegmentRef], oldest: int) -> list[SegmentRef]:
    """Without reward segments whose live range a later reward segment rewrites whole."""
    kept = []
    for i, ref in enumerate(refs):
        if ref.kind == "rewards":
            live_start = max(ref.start, oldest)
            later = [r for r in refs[i + 1:] if r.kind == "rewards"]
            if any(r.start <= live_start and r.end >= ref.end for r in later):
                continue
        kept.append(ref)
    return kept


class PoolSegments:
    """The query pool's full-size frames as segments: each frame is written once.

    An entry of the pool is identified by its buffer slot and that slot's episode and step, so
    an entry replaced since the last save is seen as new without the pool tracking anything.
    """

    def __init__(self) -> None:
        self.refs: list[SegmentRef] = []
        self._owner: dict[int, str] = {}  # pool position -> file holding its frame
        self._saved_keys: np.ndarray | None = None

    @staticmethod
    def _keys(pool: QueryPool, buffer: ReplayBuffer) -> np.ndarray:
        slots = pool.slots
        safe = np.where(slots >= 0, slots, 0)
        keys = np.stack([slots, buffer.episode[safe], buffer.step[safe]], axis=1)
        keys[slots < 0] = -1
        return keys

    def save(self, pool: QueryPool, buffer: ReplayBuffer,
             store: SegmentStore) -> tuple[list[SegmentRef], dict[str, np.ndarray]]:
        """Write the frames that entered the pool since the last save.

        Returns:
            The refs that rebuild the pool's frames, and the pool's other (small) arrays.
        """
        state = pool.state_dict()
        frames = state.pop("pool_frames")
        keys = self._keys(pool, buffer)
        live = keys[:, 0] >= 0
        changed = live.copy()
        if self._saved_keys is not None and len(self._saved_keys) == len(keys):
            changed &= (keys != self._saved_keys).any(axis=1)
        positions = np.flatnonzero(changed)
        refs = list(self.refs)
        if positions.size:
            contiguous = positions[-1] - positions[0] + 1 == len(positions)
            chosen = frames[positions[0]:positions[-1] + 1] if contiguous else frames[positions]  # a view if it can
            ref = store.write("pool", 0, 0, {"positions": positions, "frames": chosen})
            refs.append(ref)
            self._owner.update((int(p), ref.file) for p in positions)
        needed = {self._owner[int(p)] for p in np.flatnonzero(live)}
        self.refs = [r for r in refs if r.file in needed]
        self._saved_keys = keys
        return list(self.refs), state

    def load(self, pool: QueryPool, buffer: ReplayBuffer, store: SegmentStore, refs: list[SegmentRef],
             header: dict[str, np.ndarray]) -> None:
        """Rebuild ``pool`` (after the buffer) from its small arrays and its frame segments.

        Raises:
            DamagedSegment: A listed segment cannot be read.
        """
        capacity = len(header["pool_slots"])
        frames: np.ndarray | None = None
        self._owner = {}
        for ref in refs:
            arrays = store.read(ref)
            if frames is None:
                frames = np.zeros((capacity, *arrays["frames"].shape[1:]), np.uint8)
            frames[arrays["positions"]] = arrays["frames"]
            self._owner.update((int(p), ref.file) for p in arrays["positions"])
        pool.load_state_dict({**header, "pool_frames": frames if frames is not None else np.zeros((0,), np.uint8)})
        self.refs = list(refs)
        self._saved_keys = self._keys(pool, buffer)


class PreferenceSegments:
    """The preference data set as segments of the pairs added since the previous save."""

    def __init__(self) -> None:
        self.refs: list[SegmentRef] = []
        self.saved_total = 0
        """Pairs ever added, up to which ``refs`` hold them."""

    def save(self, dataset: PreferenceDataset, store: SegmentStore) -> tuple[list[SegmentRef], dict[str, np.ndarray]]:
        """Write the pairs added since the last save.

        Returns:
            The refs that rebuild the data set, and its (small) header arrays.
        """
        total = dataset.total_added
        live_start = total - len(dataset)  # the FIFO dropped every pair before this one
        refs = [r for r in self.refs if r.end > live_start]
        first_new = max(self.saved_total, live_start)
        if total > first_new:
            refs.append(store.write("labels", first_new, total, dataset.newest_rows(total - first_new)))
        self.refs, self.saved_total = refs, total
        header = {"preferences_meta": np.array([dataset.capacity, total, len(dataset)], np.int64),
                  "preferences_heldout_fraction": np.array(dataset.heldout_fraction, np.float64)}
        return list(refs), header

    def load(self, store: SegmentStore, refs: list[SegmentRef], header: dict[str, np.ndarray]) -> PreferenceDataset:
        """The data set the header and the listed segments describe.

        Raises:
            DamagedSegment: A listed segment cannot be read, or they hold fewer pairs than the header says.
        """
        capacity, total, size = (int(v) for v in header["preferences_meta"])
        live_start = total - size
        parts = []
        for ref in refs:
            rows = store.read(ref)
            skip = max(live_start - ref.start, 0)
            parts.append({key: value[skip:] for key, value in rows.items()})
        rows = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]} if parts else {}
        if (len(rows["labels"]) if rows else 0) != size:
            raise DamagedSegment(refs[-1].file if refs else MANIFEST_FILE,
                                 f"the segments hold other than the {size} pairs listed")
        self.refs, self.saved_total = list(refs), total
        return PreferenceDataset.from_rows(capacity, float(header["preferences_heldout_fraction"]), total, rows)


class WindowSegments:
    """The query window's per-step simulator states as segments: a finished episode is written once.

    Episodes are identified by their first stream position; the episode still running is small
    (at most one episode's states) and is written again at each save until it ends.
    """

    def __init__(self) -> None:
        self.refs: list[SegmentRef] = []
        self._owner: dict[tuple[int, int], str] = {}  # (start, length) -> file holding that episode

    def save(self, window: StateWindow, store: SegmentStore) -> tuple[list[SegmentRef], dict[str, np.ndarray]]:
        """Write the episodes not saved yet.

        Returns:
            The refs that rebuild the window, and its (small) header arrays.
        """
        state = window.state_dict()
        starts, lengths = state["window_starts"], state["window_lengths"]
        ends = np.cumsum(lengths)
        episodes = [(int(a), int(n)) for a, n in zip(starts, lengths)]
        new = [i for i, key in enumerate(episodes) if key not in self._owner]
        refs = list(self.refs)
        if new:
            rows = np.concatenate([np.arange(ends[i] - lengths[i], ends[i]) for i in new])
            ref = store.write("window", int(starts[new[0]]), int(starts[new[-1]] + lengths[new[-1]]), {
                "starts": starts[new], "lengths": lengths[new], "steps": state["window_steps"][rows],
                "episodes": state["window_episodes"][new]})
            refs.append(ref)
            self._owner.update((episodes[i], ref.file) for i in new)
        needed = {self._owner[key] for key in episodes}
        self.refs = [r for r in refs if r.file in needed]
        self._owner = {key: self._owner[key] for key in episodes}
        header = {"window_meta": state["window_meta"], "window_starts": starts, "window_lengths": lengths}
        return list(self.refs), header

    def load(self, window: StateWindow, store: SegmentStore, refs: list[SegmentRef],
             header: dict[str, np.ndarray]) -> None:
        """Rebuild ``window`` from its header and the listed segments.

        Raises:
            DamagedSegment: A listed segment cannot be read, or an episode the header lists is in none.
        """
        found: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, str]] = {}
        for ref in refs:
            arrays = store.read(ref)
            ends = np.cumsum(arrays["lengths"])
            for i, (start, length) in enumerate(zip(arrays["starts"], arrays["lengths"])):
                steps = arrays["steps"][ends[i] - length:ends[i]]
                found[(int(start), int(length))] = (steps, arrays["episodes"][i], ref.file)
        keys = [(int(a), int(n)) for a, n in zip(header["window_starts"], header["window_lengths"])]
        missing = [key for key in keys if key not in found]
        if missing:
            raise DamagedSegment(refs[-1].file if refs else MANIFEST_FILE,
                                 f"no segment holds the window's episode at {missing[0][0]}")
        meta = header["window_meta"]
        step_dim, episode_dim = int(meta[2]), int(meta[3])
        window.load_state_dict({
            "window_meta": meta, "window_starts": header["window_starts"], "window_lengths": header["window_lengths"],
            "window_steps": np.concatenate([found[k][0] for k in keys]) if keys else np.zeros((0, step_dim)),
            "window_episodes": np.stack([found[k][1] for k in keys]) if keys else np.zeros((0, episode_dim)),
        })
        self.refs = list(refs)
        self._owner = {key: found[key][2] for key in keys}
