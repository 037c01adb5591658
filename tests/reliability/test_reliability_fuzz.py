"""Hostile model answers never crash anything and are never read as a label they are not.

Answers come from a seeded generator (rlvlmf/testing/fuzz_answers.py) that knows, by
construction, what each must give: empty, ~1 MB, bytes that are not UTF-8, lone
surrogates, wrong JSON, contradictory text, prompt injection, HTML/script, and clear
labels hidden among all of those.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.feedback.base import Label
from rlvlmf.feedback.parsing import parse_label
from rlvlmf.testing.fuzz_answers import KINDS, AnswerFuzzer
from rlvlmf.testing.fuzz_http import FAMILIES, check_outcomes, label_fuzzed

N_PARSED = 1000
N_HTTP = 300  # per backend; benchmarks/reliability_report.py sends 1,000+


def test_parser_reads_1000_fuzzed_answers_exactly() -> None:
    answers = AnswerFuzzer(np.random.default_rng(0)).many(N_PARSED)
    assert set(Counter(a.kind for a in answers)) == set(KINDS)
    assert sum(len(a.text.encode("utf-8", "surrogatepass")) >= 1 << 20 for a in answers) >= 10
    wrong = []
    for answer in answers:
        parsed = parse_label(answer.text)
        expected = Label.NONE if answer.label is None else answer.label
        if parsed.label != expected or parsed.reason != answer.reason:
            wrong.append((answer.kind, answer.text[:80], parsed))
    assert not wrong, wrong[:5]
    labelled = sum(a.label is not None for a in answers)
    assert 0.2 * N_PARSED < labelled < 0.8 * N_PARSED  # both outcomes are exercised


@pytest.mark.parametrize("family", FAMILIES)
def test_fuzzed_answers_through_backend_labeler_and_store(family: str, tmp_path: Path) -> None:
    answers = AnswerFuzzer(np.random.default_rng(1), huge_every=100).many(N_HTTP)
    assert any(a.has_raw_bytes for a in answers) and any(a.kind == "huge" for a in answers)
    results, store = label_fuzzed(family, answers, tmp_path / "q")
    with store:
        problems = check_outcomes(answers, results, store)
        assert not problems, problems[:5]
        # One row per answer, each with its raw text; a failed or half-written row would show here.
        stats = store.stats()
        assert stats.total == stats.ok == N_HTTP
        assert stats.labels.get(-1, 0) + stats.labels.get(0, 0) + stats.labels.get(1, 0) == N_HTTP
        assert sum(stats.abstains.values()) == sum(a.label is None for a in answers)


def test_audit_report_of_fuzzed_answers_is_written_and_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlvlmf.cli import main

    answers = AnswerFuzzer(np.random.default_rng(2), huge_every=1000).many(120)
    assert any("\ud800" in a.text or "\udfff" in a.text for a in answers)
    results, store = label_fuzzed("openai", answers, tmp_path / "q")
    store.close()
    out = tmp_path / "audit.html"
    assert main(["queries", "audit", "--store", str(tmp_path / "q"), "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    # Model text is shown escaped: the page's own script is the only one.
    assert page.count("<script") == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x onerror" not in page and "<svg/onload" not in page
