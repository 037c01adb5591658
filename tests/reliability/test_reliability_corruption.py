"""Damaged checkpoints and stores: one clear line saying how to recover, never a traceback or a reset.

One short run (scripted teacher, checkpoints at steps 200 and 400, stopped at 500) is copied
for each case and damaged the way a crash, a full disk or a bad copy would. Most cases go
through ``rlvlmf.cli.main`` in-process; two go through a real ``python -m rlvlmf`` to check
the exit status and stderr of the process itself.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rlvlmf.cli import main
from rlvlmf.testing.crash_harness import ROOT, TINY
from rlvlmf.training.builder import build_config
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.loop import run_training
from rlvlmf.training.segments import read_manifest

SHORT = [*TINY, "seed_steps=100", "unsup_steps=100"]
LATEST, EARLIER = "step_000000400", "step_000000200"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    config = build_config("pendulum", SHORT, steps=600)
    run_training(config, root / "runs" / "r", store_dir=root / "q", export_dir=None, progress=False, stop_after=500)
    assert CheckpointManager(root / "runs" / "r" / "checkpoints").list() == [EARLIER, LATEST]
    return root


@pytest.fixture
def work(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "w")
    return tmp_path / "w"


def truncate(path: Path, size: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if size is None else size])


def resume_args(work: Path, *extra: str) -> list[str]:
    return [
        "train", "--resume", str(work / "runs" / "r"), "--store", str(work / "q"), "--no-progress", "--stop-after", "450", *extra,
    ]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def the_error(code: int, err: list[str], command: str) -> str:
    """The one error line of a failed command (other lines may only be third-party noise)."""
    assert code == 2, err
    assert not any("Traceback" in line for line in err), err
    errors = [line for line in err if line.startswith(f"rlvlmf {command}: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def ckpt(work: Path, name: str = LATEST) -> Path:
    return work / "runs" / "r" / "checkpoints" / name


def newest_segment(work: Path, kind: str) -> Path:
    """A segment file that only the latest checkpoint lists (written when it was taken)."""
    root = work / "runs" / "r" / "checkpoints"
    listed = [{ref.file for refs in read_manifest(root / name) for ref in refs} for name in (EARLIER, LATEST)]
    (name,) = [f for f in listed[1] - listed[0] if f.startswith(kind)]
    return root / "segments" / name


DAMAGE: dict[str, Callable[[Path], None]] = {
    "newest transitions segment truncated": lambda w: truncate(newest_segment(w, "transitions-")),
    "newest transitions segment missing": lambda w: newest_segment(w, "transitions-").unlink(),
    "newest rewards segment garbage": lambda w: newest_segment(w, "rewards-").write_bytes(b"\x00garbage" * 64),
    "segment list truncated": lambda w: truncate(ckpt(w) / "segments.json"),
    "arrays.npz truncated": lambda w: truncate(ckpt(w) / "arrays.npz"),
    "arrays.npz empty": lambda w: truncate(ckpt(w) / "arrays.npz", 0),
    "meta.json truncated": lambda w: truncate(ckpt(w) / "meta.json"),
    "meta.json missing": lambda w: (ckpt(w) / "meta.json").unlink(),
    "newest labels segment garbage": lambda w: newest_segment(w, "labels-").write_bytes(b"\x00garbage" * 64),
    "state.pt truncated": lambda w: truncate(ckpt(w) / "state.pt"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_names_the_earlier_one(damage: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    DAMAGE[damage](work)
    line = the_error(*run_cli(resume_args(work), capsys), "train")
    assert f"{LATEST} is damaged" in line and f"--checkpoint {EARLIER}" in line


def test_every_checkpoint_damaged_says_start_again(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncate(ckpt(work) / "arrays.npz")
    truncate(ckpt(work, EARLIER) / "state.pt")
    line = the_error(*run_cli(resume_args(work), capsys), "train")
    assert f"--checkpoint {EARLIER}" in line
    line = the_error(*run_cli(resume_args(work, "--checkpoint", EARLIER), capsys), "train")
    assert f"{EARLIER} is damaged" in line and "no earlier checkpoint is left; start the run again under a new name" in line


@pytest.mark.parametrize("damage", ["latest pointer missing", "latest pointer names nothing", "half-written .partial"])
def test_pointer_and_partial_damage_resume_from_the_newest_complete_checkpoint(
    damage: str, work: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    root = work / "runs" / "r" / "checkpoints"
    if damage == "latest pointer missing":
        (root / "latest").unlink()
    elif damage == "latest pointer names nothing":
        (root / "latest").write_text("step_000000999\n")
    else:  # killed while writing the next checkpoint: a .partial folder, half its files
        partial = root / ".step_000000600.partial"
        shutil.copytree(ckpt(work), partial)
        truncate(partial / "arrays.npz")
        (partial / "meta.json").unlink()
    assert CheckpointManager(root).latest() == LATEST
    if damage != "half-written .partial":
        return  # the pointer is only a hint; the full resume below covers the rest
    with caplog.at_level(logging.INFO, logger="rlvlmf.training.loop"):
        code, err = run_cli(resume_args(work), capsys)
    assert code == 0, err
    assert f"at step {int(LATEST[5:])}" in caplog.text  # not a silent restart from step 0


STORE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda w: truncate(w / "q" / "queries.sqlite"),
    "first page only": lambda w: truncate(w / "q" / "queries.sqlite", 4096),
    "zero bytes": lambda w: truncate(w / "q" / "queries.sqlite", 0),
    "garbage": lambda w: (w / "q" / "queries.sqlite").write_bytes(b"not a database " * 300),
}


@pytest.mark.parametrize("damage", list(STORE_DAMAGE))
def test_damaged_store_is_reported_and_left_alone(damage: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = work / "q" / "queries.sqlite"
    STORE_DAMAGE[damage](work)
    before = db.read_bytes()
    line = the_error(*run_cli(resume_args(work), capsys), "train")
    assert str(db) in line and f"mv {db} {db}.bad" in line
    assert db.read_bytes() == before  # not reset, not "repaired" into an empty store
    line = the_error(*run_cli(["queries", "stats", "--store", str(work / "q")], capsys), "queries")
    assert f"mv {db} {db}.bad" in line


def test_missing_frame_is_reported_with_the_way_back(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    next(iter(sorted((work / "q" / "frames").glob("*/*.png")))).unlink()
    args = ["queries", "export", "--store", str(work / "q"), "--out", str(work / "e.jsonl"), "--embed-frames"]
    line = the_error(*run_cli(args, capsys), "queries")
    assert "is missing" in line and "copy the frames folder again" in line


@pytest.mark.parametrize("damage", ["arrays.npz truncated", "store truncated"])
def test_damage_through_the_real_cli_process(damage: str, work: Path) -> None:
    if damage == "store truncated":
        STORE_DAMAGE["truncated"](work)
    else:
        DAMAGE[damage](work)
    proc = subprocess.run([sys.executable, "-m", "rlvlmf", *resume_args(work)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    line = the_error(proc.returncode, err, "train")
    assert ("--checkpoint" in line) if damage.startswith("arrays") else (".bad" in line)
    assert not (work / "runs" / "r" / "summary.json").exists()
