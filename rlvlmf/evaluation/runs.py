"""Reading run folders written by ``rlvlmf train`` into plain records for the report.

A run folder holds ``config.json`` (resolved config), ``eval.jsonl`` (one line per
evaluation: step, per-episode returns, successes or null, lengths), ``metrics.csv`` and,
once finished, ``summary.json``. A run's *method* is its reward and backend, or the label
a sweep recorded for it in the parent folder's ``sweep.json`` (methods that differ only by
``--set`` overrides need that label to be told apart); its *task* is its preset.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvlmf.errors import ConfigError, UserError
from rlvlmf.evaluation.sweep import MANIFEST_NAME, method_label, read_manifest
from rlvlmf.training.config import read_reward
from rlvlmf.training.run_files import RunFiles


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation of a run.

    Attributes:
        step: Environment step of the evaluation.
        returns: Episode returns, shape (episodes,).
        successes: Per-episode success flags, shape (episodes,), or ``None`` if the task
            has no success signal.
    """

    step: int
    returns: tuple[float, ...]
    successes: tuple[bool, ...] | None

    @property
    def return_mean(self) -> float:
        """Mean episode return."""
        return sum(self.returns) / len(self.returns)

    @property
    def success_rate(self) -> float | None:
        """Fraction of successful episodes, ``None`` without a success signal."""
        if self.successes is None:
            return None
        return sum(self.successes) / len(self.successes)


@dataclass(frozen=True)
class Run:
    """What the report needs from one run folder.

    Attributes:
        path: The run folder.
        method: Method label (reward + backend, or the sweep's label).
        task: Preset name.
        seed: Training seed, if recorded.
        evals: Evaluations in step order.
        finished: Whether ``summary.json`` exists.
        labels: Preference labels used (``None`` if the run records none).
        cost_usd: VLM cost in US dollars (``None`` if the run records none).
        label_accuracy: Agreement of the labels with the ground-truth reward, in [0, 1]
            (``None`` if the run records none).
    """

    path: Path
    method: str
    task: str
    seed: int | None
    evals: tuple[EvalPoint, ...]
    finished: bool
    labels: float | None
    cost_usd: float | None
    label_accuracy: float | None = None
    training: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]] = field(default_factory=dict)
    """``metrics.csv`` columns of ``TRAINING_COLUMNS`` that hold values: column -> (steps, values)."""

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.path.name

    @property
    def final(self) -> EvalPoint | None:
        """The last evaluation, ``None`` before the first."""
        return self.evals[-1] if self.evals else None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read one run folder.

    Raises:
        UserError: ``config.json`` is missing or a file is not valid JSON.
    """
    run_dir = Path(path)
    files = RunFiles(run_dir)
    config = _read_json(files.config)
    summary = _read_json(files.summary) if files.is_complete() else None
    entry = read_manifest(run_dir.parent).get(run_dir.name) if (run_dir.parent / MANIFEST_NAME).exists() else None
    if entry:
        method = str(entry["method"])
    else:  # backend options (e.g. teacher noise) distinguish methods that share a backend
        options = [str(o) for o in config.get("backend_options") or ()]
        method = method_label(_reward_flag(config), _str_or_none(config.get("backend")), options)
    # A run trained with --env has no preset; its task is the env's id (as its sweep names it).
    env_id = str(config.get("env") or "").rpartition(":")[2]
    task = str(config.get("preset") or env_id or (entry or {}).get("preset") or "unknown")
    seed = config.get("seed", (entry or {}).get("seed"))
    last_metrics = _last_metrics(files.metrics)
    return Run(
        path=run_dir,
        method=method,
        task=task,
        seed=int(seed) if seed is not None else None,
        evals=_read_evals(files.evals),
        finished=summary is not None,
        labels=_number((summary or {}).get("labels"), last_metrics.get("feedback/labels")),
        cost_usd=_number((summary or {}).get("cost_usd"), last_metrics.get("feedback/cost_usd")),
        label_accuracy=_number((summary or {}).get("label_accuracy"), last_metrics.get("reward/label_gt_acc")),
        training=_metric_series(files.metrics, TRAINING_COLUMNS),
    )


def _reward_flag(config: Mapping[str, Any]) -> str | None:
    """The run's ``--reward`` text, from the saved mode (or, in older runs, that text)."""
    saved = config.get("reward")
    if saved is None:
        return None
    try:
        return read_reward(saved, str(config.get("backend") or "")).flag
    except ConfigError:  # e.g. an old clip run whose backend is not clip:MODEL: label it as saved
        return saved if isinstance(saved, str) else None


def find_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Load every run folder in ``paths``: each path is a run folder or a folder of them.

    Folders are searched recursively for ``config.json``; results are sorted by path.

    Raises:
        UserError: A path does not exist, or no run folder was found at all.
    """
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{path} does not exist; give run folders or folders that contain them")
        if RunFiles(path).is_run():
            found.add(path.resolve())
        else:
            found.update(c.parent.resolve() for c in path.rglob(RunFiles(path).config.name) if "checkpoints" not in c.parts)
    if not found:
        raise UserError("no run folders (folders with config.json) under " + ", ".join(str(p) for p in paths))
    return [load_run(p) for p in sorted(found)]


def _read_evals(path: Path) -> tuple[EvalPoint, ...]:
    if not path.exists():
        return ()
    points: dict[int, EvalPoint] = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            successes = row.get("successes")
            point = EvalPoint(
                step=int(row["step"]),
                returns=tuple(float(r) for r in row["returns"]),
                successes=tuple(bool(s) for s in successes) if successes is not None else None,
            )
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # a line cut short by a kill mid-write; the run will redo it
            raise UserError(f"{path}:{number} is not valid JSON") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}:{number}: expected step and returns ({exc})") from exc
        if point.returns:
            points[point.step] = point  # a resumed run may repeat a step; the later line wins
    return tuple(points[s] for s in sorted(points))


TRAINING_COLUMNS: tuple[str, ...] = (
    "train/episode_return", "train/learned_return", "feedback/round_label_accuracy", "reward/train_acc",
)
"""Training scalars the report draws: episode return (env and learned reward), each feedback
round's label accuracy against the ground truth, and the reward fit's accuracy on its labels."""


def _metric_series(path: Path, columns: Sequence[str]) -> dict[str, tuple[tuple[int, ...], tuple[float, ...]]]:
    """``column -> (steps, values)`` from ``metrics.csv``, blanks and NaNs (unknown values) left out."""
    series: dict[str, tuple[list[int], list[float]]] = {column: ([], []) for column in columns}
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for column, (steps, values) in series.items():
                raw = row.get(column)
                if raw in (None, ""):
                    continue
                try:
                    value = float(raw)
                except ValueError:
                    continue
                if math.isfinite(value):
                    steps.append(int(float(row["step"])))
                    values.append(value)
    return {column: (tuple(steps), tuple(values)) for column, (steps, values) in series.items() if steps}


def _last_metrics(path: Path) -> dict[str, float]:
    """Latest non-empty value of each column of ``metrics.csv``."""
    latest: dict[str, float] = {}
    if not path.exists():
        return latest
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key and value not in (None, ""):
                    try:
                        latest[key] = float(value)
                    except ValueError:
                        continue
    return latest


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"{path} is missing; is {path.parent} a run folder of rlvlmf train?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object")
    return data


def _number(*candidates: Any) -> float | None:
    for value in candidates:
        if value is not None:
            number = float(value)
            if math.isfinite(number):
                return number
    return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):  # a nested config section: its name or kind
        value = value.get("name") or value.get("kind") or value.get("spec")
        return None if value is None else str(value)
    return str(value)
