"""Human relabelling: CSV labels become 'human' rows; the VLM's answers stay as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlvlmf.audit.relabel import HUMAN_LABELER, human_key, parse_human_label, relabel_from_csv
from rlvlmf.audit.report import AuditConfig, write_audit_report
from rlvlmf.errors import UserError
from rlvlmf.feedback.base import Label
from rlvlmf.testing.audit_store import build_store


def test_template_filled_in_becomes_human_rows(tmp_path: Path, rng: np.random.Generator) -> None:
    store, keys = build_store(tmp_path / "q", rng)
    before = {row.key: row for row in store.iter_queries()}
    result = write_audit_report(store, tmp_path / "audit.html", AuditConfig())
    template = (result.files_dir / "relabel.csv").read_text().splitlines()
    # A person fills in two of the three rows and leaves one blank.
    header, *lines = template
    first_key = lines[0].split(",")[0]
    filled = [
        header,
        lines[0].replace(first_key + ",,", first_key + ",1,looks open", 1),
        lines[1].replace(",,", ",second,", 1),
        lines[2],
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(filled) + "\n")

    outcome = relabel_from_csv(store, csv_path)
    assert (outcome.written, outcome.skipped) == (2, 1)
    humans = list(store.iter_queries(labeler=HUMAN_LABELER))
    assert len(humans) == 2 and all(h.label is Label.SECOND for h in humans)
    sources = {h.meta["relabels"] for h in humans}
    assert sources == {lines[0].split(",")[0], lines[1].split(",")[0]}
    for human in humans:
        source = before[human.meta["relabels"]]
        assert human.key == human_key(source) != source.key
        assert (human.first_frame, human.second_frame, human.gt_label, human.goal) == (
            source.first_frame, source.second_frame, source.gt_label, source.goal
        )
        assert human.meta["source_label"] == int(source.label)
    assert next(h for h in humans if h.stages).stages == ("looks open",)
    # The VLM's rows are untouched.
    assert {row.key: row for row in store.iter_queries(labeler="vlm")} == before

    # Relabelling the same pair again replaces the human label instead of adding a row.
    csv_path.write_text(f"key,label\n{lines[0].split(',')[0]},0\n")
    relabel_from_csv(store, csv_path)
    humans = {h.meta["relabels"]: h for h in store.iter_queries(labeler=HUMAN_LABELER)}
    assert len(humans) == 2 and humans[lines[0].split(",")[0]].label is Label.FIRST

    # The report shows human labels beside the VLM's and still audits only the VLM's rows.
    page = (write_audit_report(store, tmp_path / "again.html").html_path).read_text()
    assert page.count("human label") == 2 and page.count('class="pair ') == len(before)


def test_bad_csv_writes_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    store, keys = build_store(tmp_path / "q", rng)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"key,label\n{keys[0]},1\nnot-a-key,0\n")
    with pytest.raises(UserError, match="not-a-key"):
        relabel_from_csv(store, bad)
    assert not list(store.iter_queries(labeler=HUMAN_LABELER))
    bad.write_text(f"key,label\n{keys[0]},maybe\n")
    with pytest.raises(UserError, match=r"bad.csv:2: label 'maybe'"):
        relabel_from_csv(store, bad)
    bad.write_text("id,preference\nx,1\n")
    with pytest.raises(UserError, match="columns 'key' and 'label'"):
        relabel_from_csv(store, bad)
    assert parse_human_label(" First ") is Label.FIRST and parse_human_label("") is None
