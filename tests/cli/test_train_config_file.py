"""``rlvlmf train --config FILE``: a run started from a saved config (what a sweep launches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlvlmf.cli import main
from rlvlmf.training.builder import build_config, load_config, save_config
from rlvlmf.training.run_files import RunFiles
from tests.training.test_train import TINY


def test_train_starts_from_a_saved_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = build_config("pendulum", [*TINY, "knn_k=3"], steps=400, seed=7, reward="env")
    save_config(config, tmp_path / "saved")
    code = main(["train", "--config", str(RunFiles(tmp_path / "saved").config), "--out", str(tmp_path / "runs"),
                 "--store", str(tmp_path / "q"), "--export-dir", str(tmp_path / "rm"), "--no-progress", "--stop-after", "50"])
    assert code == 0
    run_dir = tmp_path / "runs" / "pendulum-env-s7"  # the default name comes from the saved config
    assert load_config(run_dir) == config
    assert f"stopped at step 50; continue with: rlvlmf train --resume {run_dir}" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [["--seed", "1"], ["--reward", "env"], ["--set", "knn_k=4"], ["--preset", "pendulum"]])
def test_config_file_refuses_flags_that_would_change_it(tmp_path: Path, extra: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"preset": "pendulum"}))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "runs"), *extra]) == 2
    assert f"--config is the whole config: edit the file instead of adding {extra[0]}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_config_file_that_is_not_a_config_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert "is not a JSON config" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err
