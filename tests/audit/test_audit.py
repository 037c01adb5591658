"""Audit report: numbers match a store with known contents, model text stays text, Chromium renders it."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlvlmf.audit.report import AuditConfig, write_audit_report
from rlvlmf.audit.stats import gap_bins
from rlvlmf.codegen.records import CodegenRecorder, messages_record
from rlvlmf.feedback.chat import ChatMessage
from rlvlmf.feedback.summary import ABSTAIN, CORRECT, FAILED, NO_GT, WRONG, flip_stats, outcome, summarize
from rlvlmf.testing.audit_store import CASES, HOSTILE, IDENTITY, build_store


def test_outcomes_bins_and_flips(tmp_path: Path, rng: np.random.Generator) -> None:
    store, _ = build_store(tmp_path / "q", rng)
    rows = list(store.iter_queries())
    assert [outcome(r) for r in rows] == [case[3] for case in CASES] + [WRONG, FAILED]
    bins = gap_bins(rows, num_bins=2)
    # Gaps run to 1.0: [0, 0.5) holds 0.1 c, 0.2 w, 0.2 c; [0.5, 1.0] holds 0.9 c, 1.0 c, 1.0 abstain, 0.9 w (swapped).
    assert [(b.low, b.high) for b in bins] == [(0.0, 0.5), (0.5, 1.0)]
    assert [(b.correct, b.wrong, b.abstain) for b in bins] == [(2, 1, 0), (2, 1, 1)]
    assert bins[0].agreement == pytest.approx(2 / 3)
    explicit = gap_bins(rows, edges=[0.0, 0.15, 2.0])
    assert [(b.correct, b.wrong, b.abstain) for b in explicit] == [(1, 0, 0), (3, 2, 1)]
    flips = flip_stats(rows)
    assert (flips.both_orders, flips.compared, flips.flips, flips.flip_rate) == (1, 1, 1, 1.0)
    # One summary for the store, `queries stats` and the report.
    stats = store.stats()
    assert stats == summarize(rows) and stats.flips == flips
    assert (stats.with_gt, stats.agree, stats.agreement) == (6, 4, pytest.approx(4 / 6))
    assert stats.to_dict()["outcomes"] == {CORRECT: 4, WRONG: 2, ABSTAIN: 1, NO_GT: 2, FAILED: 1}


def _cell(page: str, ident: str) -> str:
    match = re.search(rf'id="{re.escape(ident)}">([^<]*)<', page)
    assert match, ident
    return match.group(1)


def test_report_numbers_escaping_and_side_files(tmp_path: Path, rng: np.random.Generator) -> None:
    store, keys = build_store(tmp_path / "q", rng)
    recorder = CodegenRecorder(store.root, "20240101-000000-drawer-abc123")
    goal_frame = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    recorder.save_frames({"goal": goal_frame})
    recorder.save("session", {"task": {"goal": "to open the drawer"}, "backend": IDENTITY})
    messages = messages_record([ChatMessage("user", ("write a reward <i>now</i>", goal_frame))], recorder.image_files)
    recorder.save("attempt-01", {
        "messages": messages, "reply": "```python\n<b>x</b>```", "code": "def reward(obs): return 1 < 2",
        "verification": {"passed": True}, "passed": True,
    })
    recorder.save("result", {"passed": True, "attempts": 1})
    out = tmp_path / "report" / "audit.html"
    result = write_audit_report(store, out, AuditConfig(num_bins=2, thumb_size=16))
    page = out.read_text(encoding="utf-8")

    assert _cell(page, "stat-queries") == "10"
    assert _cell(page, "stat-ok") == "9"
    assert _cell(page, "stat-failed") == "1"
    assert _cell(page, "stat-correct") == "4"
    assert _cell(page, "stat-wrong") == "2"
    assert _cell(page, "stat-agreement") == f"{4 / 6:.3f}"
    assert _cell(page, "stat-label-none") == "1"
    assert _cell(page, "stat-flip-rate") == "1.000"
    assert _cell(page, "stat-cost") == f"{0.01 * 9:.4f}"
    assert _cell(page, "confusion-second-first") == "1"
    assert _cell(page, "confusion-second-second") == "2"
    assert _cell(page, "confusion-first-second") == "1"
    assert _cell(page, "confusion-tie-second") == "1"
    assert _cell(page, "confusion-unknown-first") == "1"
    bin_rows = re.findall(r'<tr class="bin">(.*?)</tr>', page)
    assert [re.findall(r"<td>([^<]*)</td>", r)[2:6] for r in bin_rows] == [["3", "2", "1", "0"], ["4", "2", "1", "1"]]
    assert page.count('class="pair ') == 10

    # The hostile answer is shown as text, never as markup; so is the codegen record.
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "return 1 &lt; 2" in page and "a reward &lt;i&gt;now&lt;/i&gt;" in page
    assert "passed after 1 attempt(s)" in page and "&lt;image goal.png [20, 20, 3]&gt;" in page and 'alt="goal"' in page
    assert page.count("<script>") == 1  # only the report's own filter script

    numbers = json.loads((result.files_dir / "stats.json").read_text())
    assert numbers["outcomes"] == {CORRECT: 4, WRONG: 2, ABSTAIN: 1, NO_GT: 2, FAILED: 1}
    assert numbers["agreement"] == pytest.approx(4 / 6)
    assert [b["correct"] for b in numbers["gap_bins"]] == [2, 2]
    for path in result.plots.values():
        with Image.open(path) as image:
            assert image.size[0] > 100 and np.asarray(image).std() > 0
    with open(result.files_dir / "relabel.csv", newline="") as handle:
        template = list(csv.DictReader(handle))
    assert sorted(r["key"] for r in template) == sorted([keys[1], keys[5], keys[8]])  # wrong, abstain, swapped wrong
    assert all(r["label"] == "" for r in template)
    assert result.listed == 10 and result.relabel_rows == 3


def test_report_caps_pairs_and_filters_run(tmp_path: Path, rng: np.random.Generator) -> None:
    store, _ = build_store(tmp_path / "q", rng)
    result = write_audit_report(store, tmp_path / "a.html", AuditConfig(max_pairs=3, thumb_format="jpeg"))
    page = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert result.listed == 3 and page.count('class="pair ') == 3
    assert page.count("data:image/jpeg;base64,") == 6  # two frames per listed pair
    assert 'class="pair wrong"' in page  # wrong pairs come first
    with pytest.raises(Exception, match="no queries for run 'other'"):
        write_audit_report(store, tmp_path / "b.html", AuditConfig(run_id="other"))


def _screenshot(chromium: str, url: str, shot: Path, profile: Path, height: int) -> np.ndarray:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size=1200,{height}", url,
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    with Image.open(shot) as image:
        return np.asarray(image.convert("L"), dtype=np.float64)


def _content_bottom(pixels: np.ndarray) -> int:
    """Last row with anything darker than the white background."""
    return int(np.nonzero(pixels.min(axis=1) < 240)[0].max())


def test_report_renders_in_headless_chromium(tmp_path: Path, rng: np.random.Generator) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    store, _ = build_store(tmp_path / "q", rng)
    out = tmp_path / "audit.html"
    write_audit_report(store, out, AuditConfig(thumb_size=64))
    pixels = _screenshot(chromium, out.as_uri(), tmp_path / "shot.png", tmp_path / "profile", 900)
    assert pixels.shape == (900, 1200)
    assert pixels.std() > 5.0  # text, tables and plots, not a blank page

    # The outcome filter is CSS (:target), so it needs no script: showing only the two wrong
    # pairs makes the page end well above the full list's end.
    full = _screenshot(chromium, out.as_uri(), tmp_path / "full.png", tmp_path / "profile", 5000)
    wrong = _screenshot(chromium, out.as_uri() + "#show-wrong", tmp_path / "wrong.png", tmp_path / "profile", 5000)
    card = (_content_bottom(full) - _content_bottom(wrong)) / 8  # eight cards hidden
    assert card > 60, (_content_bottom(full), _content_bottom(wrong))
