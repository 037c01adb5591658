"""`rlvlmf queries audit/export/import/relabel` end to end, through the CLI entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.cli import main
from rlvlmf.feedback.store import QueryStore
from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import RewardEnsemble
from rlvlmf.testing.audit_store import build_store


def test_audit_relabel_export_import(tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]) -> None:
    store, keys = build_store(tmp_path / "q", rng)
    store.close()
    model = tmp_path / "reward.pt"
    RewardEnsemble(RewardModelConfig(frame_size=48, conv_channels=(4, 4, 4, 4), ensemble_size=1)).save(model)

    out = tmp_path / "out" / "audit.html"
    argv = ["queries", "audit", "--store", str(tmp_path / "q"), "--run", "run-1", "--out", str(out), "--model", str(model)]
    assert main([*argv, "--saliency-frames", "2"]) == 0
    assert "agreement 0.667" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert 'id="saliency"' in page and page.count('alt="saliency"') == 2

    template = out.parent / "audit_files" / "relabel.csv"
    with template.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["label"] = "1"
    with template.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["queries", "relabel", "--store", str(tmp_path / "q"), "--csv", str(template)]) == 0
    assert "stored 1 human labels (2 blank rows skipped)" in capsys.readouterr().out

    dataset = tmp_path / "d.jsonl"
    assert main(["queries", "export", "--store", str(tmp_path / "q"), "--out", str(dataset), "--embed-frames"]) == 0
    assert "wrote 11 records" in capsys.readouterr().out
    assert main(["queries", "import", "--store", str(tmp_path / "copy"), str(dataset)]) == 0
    assert "imported 11 queries" in capsys.readouterr().out
    with QueryStore(tmp_path / "q") as original, QueryStore(tmp_path / "copy") as copy:
        assert list(copy.iter_queries()) == list(original.iter_queries())

    # User errors are one line, exit code 2.
    assert main(["queries", "audit", "--store", str(tmp_path / "missing")]) == 2
    assert "no query store" in capsys.readouterr().err
    assert main(["queries", "audit", "--store", str(tmp_path / "q"), "--run", "nope", "--out", str(tmp_path / "x.html")]) == 2
    assert "no queries for run 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("with_empty_database", [False, True])
def test_audit_of_a_store_with_only_codegen_sessions_shows_them(tmp_path: Path, with_empty_database: bool,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from rlvlmf.codegen.records import CodegenRecorder

    store = tmp_path / "queries"
    recorder = CodegenRecorder(store, "drawer-open-20260101-000000")
    recorder.save("session", {"task": "drawer-open", "backend": {"family": "openai", "model": "gpt-4o"}})
    recorder.save("result", {"verdict": "verified"})
    if with_empty_database:
        QueryStore(store).close()
    out = tmp_path / "audit.html"
    assert main(["queries", "audit", "--store", str(store), "--out", str(out)]) == 0
    assert "only its code-generation sessions" in capsys.readouterr().out
    page = out.read_text()
    assert "Reward code generation" in page and "drawer-open-20260101-000000" in page
    # A folder with neither queries nor sessions is still an error, with the one line it always had.
    assert main(["queries", "audit", "--store", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no query store" in capsys.readouterr().err
