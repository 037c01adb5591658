from __future__ import annotations

from pathlib import Path

import pytest

from rlvlmf.training.metrics import MetricsLogger
from rlvlmf.utils.atomic import atomic_open, atomic_write_text


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.bin"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("half of the new")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]


def test_metrics_csv_adds_columns_and_drops_rows_after_resume_step(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log(10, {"a": 1.0})
    log.log(20, {"a": 2.0, "b": 5.0})
    log.log(30, {"a": 3.0})
    log.close()
    resumed = MetricsLogger(tmp_path, resume_step=20, tensorboard=False)
    resumed.log(30, {"a": 33.0})
    resumed.close()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,a,b"
    assert lines[1:] == ["10,1.0,", "20,2.0,5.0", "30,33.0,"]


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777
    assert os.access(tmp_path / "a.txt", os.R_OK)
