"""Injected faults: every pair ends labeled correctly or recorded as failed, never mislabeled.

A fake server answers by a rule the test can check (the brighter frame wins) and injects
429 (with and without Retry-After), 500, 503, stalls past the timeout and connections
closed mid-body at random. Timeouts and backoffs are tiny so a few hundred pairs take
seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlvlmf.feedback.base import FramePair, Label
from rlvlmf.feedback.labeler import Labeler, LabelerConfig
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing.faults import FAULTS, FaultInjector, rule_responder
from rlvlmf.testing.fuzz_http import TASK, fake_server, make_fuzz_backend
from rlvlmf.testing.rule_vlm import rule_label

TIMEOUT_S = 0.4
MAX_RETRIES = 3


def random_pairs(rng: np.random.Generator, n: int) -> list[FramePair]:
    return [FramePair(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
            for _ in range(n)]


def fault_config(**overrides: object) -> LabelerConfig:
    return LabelerConfig(**{"max_in_flight": 32, "max_retries": MAX_RETRIES, "backoff_base_s": 0.005,
                            "backoff_max_s": 0.05, "progress": False, **overrides})


@pytest.mark.parametrize(("family", "n_pairs"), [("openai", 300), ("gemini", 80), ("anthropic", 80)])
def test_faults_end_in_correct_labels_or_recorded_failures(family: str, n_pairs: int, tmp_path: Path,
                                                           rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, n_pairs)
    expected = [Label(rule_label(p.first, p.second)) for p in pairs]
    injector = FaultInjector(family, rule_responder(family), np.random.default_rng(7), rate=0.35)
    store = QueryStore(tmp_path / "q")
    server = fake_server(family, [])
    server.responder = injector
    with server:
        backend = make_fuzz_backend(family, server.url, timeout_s=TIMEOUT_S)
        with Labeler(backend, TASK, store, fault_config(), run_id="faults", rng=np.random.default_rng(3)) as labeler:
            results = labeler.label(pairs)
            stats = labeler.stats

    failed = [r for r in results if r.failed]
    answered = [(r, e) for r, e in zip(results, expected) if not r.failed]
    assert not [r for r, e in answered if r.label != e or r.answer.abstain_reason is not None], "mislabeled"
    assert all(r.label is Label.NONE and f"gave up after {MAX_RETRIES + 1} attempts" in r.error for r in failed)
    # Both outcomes occur, and every kind of fault was met.
    assert failed and len(answered) > n_pairs // 2
    assert set(injector.injected) == set(FAULTS), injector.injected

    # The store holds each pair once, as the labeler returned it, with its attempts.
    rows = store.get_many([r.key for r in results])
    assert len(rows) == n_pairs
    for result, label in zip(results, expected):
        row = rows[result.key]
        if result.failed:
            assert row.status == "failed" and row.attempts == MAX_RETRIES + 1 and "gave up" in row.error
        else:
            assert row.ok and row.label == label and 1 <= row.attempts <= MAX_RETRIES + 1
    assert stats.retries == sum(row.attempts - 1 for row in rows.values()) > 0
    assert stats.failed == len(failed) and stats.queried == len(answered)
    assert stats.backend_calls == sum(row.attempts for row in rows.values())

    # The next run asks again only what failed, and (faults gone) labels it correctly.
    with fake_server(family, []) as clean:
        clean.responder = rule_responder(family)
        backend = make_fuzz_backend(family, clean.url, timeout_s=5.0)
        with Labeler(backend, TASK, store, fault_config(), run_id="faults-2") as labeler:
            again = labeler.label(pairs)
            assert labeler.stats.queried == len(failed) and labeler.stats.from_store == len(answered)
    assert [r.label for r in again] == expected
    assert clean.count == 2 * len(failed)  # two stages per pair, nothing already paid for
    assert store.stats().failed == 0
    store.close()


def test_labeler_under_load_keeps_its_rate_and_memory(tmp_path: Path) -> None:
    """256 calls in flight, fresh pairs in chunks: no failures, flat peak RSS, no slowdown.

    The client runs in its own process so its peak RSS is the labeler's alone.
    benchmarks/reliability_report.py measures 1,000 vs 4,000 pairs.
    """
    import json
    import subprocess
    import sys

    from rlvlmf.testing.crash_harness import ROOT
    from rlvlmf.testing.openai_server import FakeOpenAIServer

    chunk, chunks = 500, 3
    with FakeOpenAIServer(delay_s=0.25) as server:
        proc = subprocess.run([sys.executable, "-m", "rlvlmf.testing.load_client", server.url, "--chunks", str(chunks),
                               "--chunk-size", str(chunk), "--in-flight", "256"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        in_flight = server.max_in_flight
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    rounds = [line for line in lines if "pairs_per_s" in line]
    assert lines[-1]["rows"] == chunk * chunks and all(r["failed"] == 0 for r in rounds)
    assert in_flight > 128  # the server really saw that many requests at once
    first, last = rounds[0], rounds[-1]
    # Three times the pairs may not cost more than a few MiB of peak memory (store pages, caches).
    assert last["VmHWM"] - first["VmHWM"] < 8.0, rounds
    assert last["pairs_per_s"] > 0.5 * first["pairs_per_s"], rounds
