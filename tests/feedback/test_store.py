"""Query store: round trips, keys, failed rows, stats, damage, and survival of SIGKILL."""

from __future__ import annotations

import ast
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import rlvlmf
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import UserError
from rlvlmf.feedback.base import Answer, FramePair, Label
from rlvlmf.feedback.store import (
    DEFAULT_STORE_DIR,
    QueryStore,
    RunUsage,
    StoredQuery,
    frame_hash,
    ground_truth,
    query_key,
)
from rlvlmf.testing.backends import brighter_second, random_pairs

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",), ("a closed drawer",))
IDENTITY = {"family": "counting", "model": "count-v1", "prompt": "v1"}
REPO = Path(__file__).resolve().parents[2]


def key_of(pair: FramePair, identity: dict = IDENTITY, task: TaskDescription = TASK) -> str:
    return query_key(identity, task, frame_hash(pair.first), frame_hash(pair.second))


def test_record_get_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    store = QueryStore(tmp_path / "q")
    pair = random_pairs(rng, 1, size=16)[0]
    answer = Answer(Label.SECOND, 0.8, ("stage one text", "1"), None, 120, 7, 0.35, 0.0021, {"model_version": "x-2024"})
    key = key_of(pair)
    written = store.record(key, pair, TASK, IDENTITY, answer, run_id="run-a", attempts=2)

    read = store.get(key)
    assert read == written
    assert read.answer() == answer
    assert (read.family, read.model, read.run_id, read.attempts, read.status) == ("counting", "count-v1", "run-a", 2, "ok")
    gt, first_return, second_return = ground_truth(pair)
    assert (read.gt_label, read.first_return, read.second_return) == (gt, first_return, second_return)
    # Frames come back pixel-exact from their content address.
    np.testing.assert_array_equal(store.load_frame(read.first_frame), pair.first)
    np.testing.assert_array_equal(store.load_frame(read.second_frame), pair.second)
    assert store.frame_path(read.first_frame).parent.name == read.first_frame[:2]
    assert store.get_many([key, "0" * 64, key]) == {key: written}
    # A second handle (another process would do the same) sees the committed row.
    assert QueryStore(tmp_path / "q", create=False).get(key) == written


def test_a_row_keeps_every_answer_field_under_its_name(tmp_path: Path, rng: np.random.Generator) -> None:
    # StoredQuery.answer() reads the Answer fields by name, so each must be a column of the row.
    assert {f.name for f in fields(Answer)} <= {f.name for f in fields(StoredQuery)}
    pair = random_pairs(rng, 1, size=16)[0]
    row = QueryStore(tmp_path / "q").record(key_of(pair), pair, TASK, IDENTITY, Answer(Label.FIRST, meta={"a": 1}))
    answer = row.answer()
    answer.meta["a"] = 2
    assert row.meta == {"a": 1}, "the answer's meta is a copy, not the row's"


def test_key_depends_on_order_backend_frames_and_goal(rng: np.random.Generator) -> None:
    pair, other = random_pairs(rng, 2)
    key = key_of(pair)
    assert key == key_of(FramePair(pair.first.copy(), pair.second.copy()))  # rewards are not part of it
    assert key != key_of(pair.swapped())
    assert key != key_of(pair, {**IDENTITY, "model": "count-v2"})
    assert key != key_of(pair, {**IDENTITY, "temperature": 0.5})
    assert key != key_of(FramePair(pair.first, other.second))
    assert key != key_of(pair, task=TaskDescription("drawer-open", "to close the drawer", ("an open drawer",)))
    # Key order inside the identity does not matter (canonical JSON).
    assert key == key_of(pair, dict(reversed(list(IDENTITY.items()))))
    # One changed pixel is a different frame.
    changed = pair.first.copy()
    changed[0, 0, 0] ^= 1
    assert frame_hash(changed) != frame_hash(pair.first)


def test_failed_rows_are_replaced_by_answers_but_answers_are_kept(tmp_path: Path, rng: np.random.Generator) -> None:
    store = QueryStore(tmp_path)
    pair = random_pairs(rng, 1)[0]
    key = key_of(pair)
    store.record(key, pair, TASK, IDENTITY, None, run_id="r", attempts=6, error="TransientBackendError: 503")
    failed = store.get(key)
    assert (failed.status, failed.label, failed.error, failed.ok) == ("failed", Label.NONE, "TransientBackendError: 503", False)

    store.record(key, pair, TASK, IDENTITY, Answer(Label.FIRST), run_id="r")
    assert store.get(key).label is Label.FIRST and store.get(key).ok
    # Neither a later failure nor a second answer overwrites a paid-for answer...
    store.record(key, pair, TASK, IDENTITY, None, error="boom")
    store.record(key, pair, TASK, IDENTITY, Answer(Label.SECOND))
    assert store.get(key).label is Label.FIRST
    # ...unless relabeling asks for it.
    row = store.get(key)
    from dataclasses import replace

    assert store.put(replace(row, label=Label.SECOND), replace=True)
    assert store.get(key).label is Label.SECOND
    assert len(store) == 1


def test_stats_and_run_usage(tmp_path: Path, rng: np.random.Generator) -> None:
    store = QueryStore(tmp_path)
    pairs = random_pairs(rng, 30)
    latencies = rng.uniform(0.1, 2.0, size=len(pairs))
    expected_agree = expected_compared = 0
    expected_labels: dict[int, int] = {}
    for index, (pair, latency) in enumerate(zip(pairs, latencies)):
        answer = brighter_second(pair)
        answer.latency_s = float(latency)
        if index % 10 == 0:
            answer = Answer(Label.NONE, abstain_reason="unparseable", latency_s=float(latency))
        elif answer.label is not Label.NONE:
            expected_compared += 1
            expected_agree += int(answer.label == ground_truth(pair)[0])
        expected_labels[int(answer.label)] = expected_labels.get(int(answer.label), 0) + 1
        store.record(key_of(pair), pair, TASK, IDENTITY, answer, run_id="a" if index < 20 else "b")
    extra = random_pairs(rng, 1)[0]
    store.record(key_of(extra), extra, TASK, IDENTITY, None, run_id="a", error="gave up")

    stats = store.stats()
    assert (stats.total, stats.ok, stats.failed) == (31, 30, 1)
    assert stats.abstains == {"unparseable": 3}
    assert stats.labels == expected_labels
    assert (stats.with_gt, stats.agree) == (expected_compared, expected_agree)
    assert stats.latency_s["p50"] == pytest.approx(np.percentile(latencies, 50))
    assert stats.latency_s["p99"] == pytest.approx(np.percentile(latencies, 99))
    assert stats.cost_usd == pytest.approx(27 * 0.001)
    assert store.stats(run_id="b").total == 10

    usage = store.run_usage("a")
    assert usage.queries == 21
    assert usage.tokens == sum(r.input_tokens + r.output_tokens for r in store.iter_queries(run_id="a"))
    assert usage.tokens == 12 * sum(r.ok and r.abstain_reason is None for r in store.iter_queries(run_id="a"))
    assert store.run_usage("nope").queries == 0


def test_run_usage_adds_an_answer_or_a_failed_query() -> None:
    # The labeler keeps its budget count as a RunUsage, the same record the store reports.
    usage = RunUsage(2, 10, 3, 0.5).add(Answer(Label.FIRST, input_tokens=7, output_tokens=2, cost_usd=0.25))
    assert usage == RunUsage(3, 17, 5, 0.75) and usage.tokens == 22
    assert usage.add(None) == RunUsage(4, 17, 5, 0.75)


def test_threads_share_a_store(tmp_path: Path, rng: np.random.Generator) -> None:
    store = QueryStore(tmp_path)
    pairs = random_pairs(rng, 40)

    def write(chunk: list[FramePair]) -> None:
        for pair in chunk:
            store.record(key_of(pair), pair, TASK, IDENTITY, brighter_second(pair))

    threads = [threading.Thread(target=write, args=(pairs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 40
    assert {row.key for row in store.iter_queries()} == {key_of(p) for p in pairs}


def test_damaged_database_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / "queries.sqlite").write_bytes(b"this is not a database, just bytes " * 100)
    with pytest.raises(UserError, match=r"damaged.*mv .*queries\.sqlite"):
        QueryStore(tmp_path)


def test_missing_store_and_newer_schema_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no query store"):
        QueryStore(tmp_path / "absent", create=False)
    QueryStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "queries.sqlite") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(UserError, match="schema version 99"):
        QueryStore(tmp_path)


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from rlvlmf.envs.task import TaskDescription
    from rlvlmf.feedback.labeler import Labeler, LabelerConfig
    from rlvlmf.feedback.store import QueryStore
    from rlvlmf.testing.backends import CountingBackend, random_pairs

    task = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
    pairs = random_pairs(np.random.default_rng(7), 200)
    backend = CountingBackend(delay_s=0.02)
    labeler = Labeler(backend, task, QueryStore(sys.argv[1]), LabelerConfig(max_in_flight=4, progress=False), run_id="killed")
    labeler.label(pairs)
    print("finished", flush=True)
    """
)


def test_store_survives_sigkill_mid_batch(tmp_path: Path) -> None:
    from rlvlmf.feedback.labeler import Labeler, LabelerConfig
    from rlvlmf.testing.backends import CountingBackend

    store_dir = tmp_path / "q"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(store_dir)], cwd=REPO, env=env, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        committed = 0
        while committed < 30:
            assert child.poll() is None, "the child finished before it could be killed"
            assert time.monotonic() < deadline, "the child wrote too few answers in time"
            time.sleep(0.05)
            try:
                with sqlite3.connect(f"file:{store_dir / 'queries.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
                    committed = conn.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet
                continue
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    store = QueryStore(store_dir)
    rows = list(store.iter_queries())
    assert 30 <= len(rows) < 200
    for row in rows:  # every committed answer is whole: right label for its stored frames
        pair = FramePair(store.load_frame(row.first_frame), store.load_frame(row.second_frame))
        assert row.ok and row.label is brighter_second(pair).label and row.run_id == "killed"

    # Resuming asks only for what was not committed.
    pairs = random_pairs(np.random.default_rng(7), 200)
    backend = CountingBackend()
    with Labeler(backend, TASK_CHILD, store, LabelerConfig(max_in_flight=8, progress=False), run_id="killed") as labeler:
        results = labeler.label(pairs)
    assert backend.pairs_seen == 200 - len(rows)
    assert sum(r.from_store for r in results) == len(rows)
    assert [r.label for r in results] == [brighter_second(p).label for p in pairs]


TASK_CHILD = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from rlvlmf.envs.task import TaskDescription
    from rlvlmf.feedback.labeler import Labeler, LabelerConfig
    from rlvlmf.feedback.store import QueryStore
    from rlvlmf.testing.backends import CountingBackend, random_pairs

    task = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
    pairs = random_pairs(np.random.default_rng(11), 60)
    start = int(sys.argv[2])
    config = LabelerConfig(max_in_flight=8, progress=False)
    labeler = Labeler(CountingBackend(), task, QueryStore(sys.argv[1]), config, run_id=sys.argv[2])
    results = labeler.label(pairs[start : start + 40])
    assert not any(r.failed for r in results)
    """
)


def test_processes_share_a_store(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Two writers with overlapping pairs (20..39 in both) at the same time.
    children = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), start], cwd=REPO, env=env, stderr=subprocess.PIPE)
        for start in ("0", "20")
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    store = QueryStore(tmp_path)
    rows = list(store.iter_queries())
    assert len(rows) == len({row.key for row in rows}) == 60
    assert all(row.ok for row in rows)


def test_key_covers_only_the_task_fields_a_backend_reads(rng: np.random.Generator) -> None:
    pair = random_pairs(rng, 1)[0]
    hashes = (frame_hash(pair.first), frame_hash(pair.second))
    edited = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",), ("a shut drawer",))
    # By default phrases count (a CLIP backend reads them)...
    assert query_key(IDENTITY, TASK, *hashes) != query_key(IDENTITY, edited, *hashes)
    # ...a goal-only backend keeps its rows when phrases change, not when the goal does.
    goal_only = ("goal",)
    assert query_key(IDENTITY, TASK, *hashes, task_fields=goal_only) == query_key(
        IDENTITY, edited, *hashes, task_fields=goal_only
    )
    with pytest.raises(UserError, match="colour"):
        query_key(IDENTITY, TASK, *hashes, task_fields=("colour",))


def _store_dir_literals(source: str) -> list[int]:
    """Lines where ``source`` types the default store folder instead of naming DEFAULT_STORE_DIR:
    a parameter default, a ``default=`` keyword, or a path joined with it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arguments):
            candidates = [*node.defaults, *(d for d in node.kw_defaults if d is not None)]
        elif isinstance(node, ast.keyword) and node.arg == "default":
            candidates = [node.value]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            candidates = [node.right]
        else:
            continue
        found += [c.lineno for c in candidates if isinstance(c, ast.Constant) and c.value == DEFAULT_STORE_DIR]
    return found


def test_the_default_store_folder_has_one_name() -> None:
    # A typed-out "queries" elsewhere would silently split runs across two stores if the default moved.
    assert _store_dir_literals('def f(store="queries"): return Path(x) / "queries"') == [1, 1]
    root = Path(rlvlmf.__file__).parent
    offenders = {str(path.relative_to(root)): lines for path in sorted(root.rglob("*.py"))
                 if path.name != "store.py" and (lines := _store_dir_literals(path.read_text(encoding="utf-8")))}
    assert offenders == {}
