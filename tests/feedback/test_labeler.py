"""Labeler: store reuse, batching, concurrency, rate limit, retries, budgets, offline, both orders."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import BudgetExhausted, ConfigError
from rlvlmf.feedback.base import Answer, Label, TransientBackendError
from rlvlmf.feedback.labeler import (
    OFFLINE_ERROR,
    POSITION_FLIP,
    LabeledQuery,
    Labeler,
    LabelerConfig,
    backoff_delay,
    combine_orders,
)
from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing.backends import BrokenBackend, CountingBackend, PositionBiasedBackend, brighter_second, random_pairs

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))


def config(**overrides: object) -> LabelerConfig:
    return LabelerConfig(**{"progress": False, "backoff_base_s": 0.01, **overrides})


def test_labels_match_backend_and_warm_rerun_makes_no_calls(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 12)
    backend = CountingBackend()
    with Labeler(backend, TASK, QueryStore(tmp_path), config(), run_id="r1") as labeler:
        cold = labeler.label(pairs)
    assert backend.calls == 12 and backend.closed
    assert [r.label for r in cold] == [brighter_second(p).label for p in pairs]
    assert not any(r.from_store or r.failed for r in cold)
    assert [r.gt_label for r in cold] == [Label(int(p.second_rewards[0] > p.first_rewards[0])) for p in pairs]

    fresh = CountingBackend()  # a new process: new backend object, same store
    with Labeler(fresh, TASK, QueryStore(tmp_path), config(), run_id="r2") as labeler:
        warm = labeler.label(pairs)
        assert labeler.stats.from_store == 12 and labeler.stats.backend_calls == 0
    assert fresh.calls == 0
    assert all(r.from_store for r in warm)
    assert [(r.key, r.answer) for r in warm] == [(r.key, r.answer) for r in cold]


def test_another_backend_identity_misses_the_store(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 3)
    store = QueryStore(tmp_path)
    Labeler(CountingBackend(name="a"), TASK, store, config()).label(pairs)
    other = CountingBackend(name="b")
    Labeler(other, TASK, store, config()).label(pairs)
    assert other.calls == 3 and len(store) == 6


def test_duplicates_in_a_batch_are_asked_once(rng: np.random.Generator) -> None:
    pair = random_pairs(rng, 1)[0]
    backend = CountingBackend()
    results = Labeler(backend, TASK, None, config()).label([pair, pair, pair])
    assert backend.calls == 1 and len({r.key for r in results}) == 1


def test_batches_follow_max_batch_and_in_flight_limit(rng: np.random.Generator) -> None:
    backend = CountingBackend(delay_s=0.03, max_batch=3)
    results = Labeler(backend, TASK, None, config(max_in_flight=2)).label(random_pairs(rng, 20))
    assert backend.calls == 7  # ceil(20 / 3)
    assert backend.max_in_flight == 2
    assert len(results) == 20


@pytest.mark.parametrize("limit", [1, 5])
def test_in_flight_limit_is_reached_not_exceeded(rng: np.random.Generator, limit: int) -> None:
    backend = CountingBackend(delay_s=0.03)
    Labeler(backend, TASK, None, config(max_in_flight=limit)).label(random_pairs(rng, 15))
    assert backend.max_in_flight == limit


def test_requests_per_minute_spaces_calls(rng: np.random.Generator) -> None:
    backend = CountingBackend()
    pairs = random_pairs(rng, 5)
    started = time.monotonic()
    Labeler(backend, TASK, None, config(requests_per_minute=1200, max_in_flight=8)).label(pairs)
    # Call k may start no earlier than k * 60/1200 s after the first slot, even with 8 slots
    # free. (A busy machine only delays calls, so this bound holds under load, unlike gaps.)
    offsets = np.sort(np.asarray(backend.call_times)) - started
    assert len(offsets) == 5
    assert np.all(offsets >= 0.05 * np.arange(5) - 1e-3)


def test_retry_after_is_honoured(tmp_path: Path, rng: np.random.Generator) -> None:
    # With a 30 s backoff ceiling, only honouring Retry-After (0.2 s) finishes this quickly.
    backend = CountingBackend(failures=[TransientBackendError("429 slow down", status=429, retry_after=0.2)])
    store = QueryStore(tmp_path)
    labeler = Labeler(backend, TASK, store, config(backoff_base_s=30, backoff_max_s=30))
    [result] = labeler.label(random_pairs(rng, 1))
    assert not result.failed and backend.calls == 2 and labeler.stats.retries == 1
    assert 0.2 <= backend.call_times[1] - backend.call_times[0] < 5
    assert store.get(result.key).attempts == 2


def test_transient_errors_back_off_then_give_up_and_are_recorded(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 2)
    backend = CountingBackend(failures=[TransientBackendError("timeout")] * 4)
    store = QueryStore(tmp_path)
    labeler = Labeler(backend, TASK, store, config(max_retries=2, max_in_flight=1), run_id="r")
    first, second = labeler.label(pairs)
    # The first pair used 3 attempts (all failed); the second failed once, then succeeded.
    assert first.failed and first.label is Label.NONE and "gave up after 3 attempts" in first.error
    assert not second.failed and second.label is brighter_second(pairs[1]).label
    assert labeler.stats.failed == 1 and labeler.stats.retries == 3
    row = store.get(first.key)
    assert (row.status, row.attempts, row.label) == ("failed", 3, Label.NONE)
    assert store.stats().failed == 1

    # A failed row is not an answer: the next run asks again and replaces it.
    again = CountingBackend()
    [retried, cached] = Labeler(again, TASK, store, config()).label(pairs)
    assert again.calls == 1 and not retried.failed and cached.from_store
    assert store.get(first.key).ok


def test_permanent_errors_fail_without_retry(rng: np.random.Generator) -> None:
    backend = BrokenBackend()
    results = Labeler(backend, TASK, None, config()).label(random_pairs(rng, 3))
    assert backend.calls == 3
    assert all(r.failed and r.label is Label.NONE and "model not found" in r.error for r in results)


def test_wrong_answer_count_is_a_failure(rng: np.random.Generator) -> None:
    class Short(CountingBackend):
        async def alabel(self, pairs, task):  # type: ignore[no-untyped-def]
            return (await super().alabel(pairs, task))[:-1]

    results = Labeler(Short(max_batch=4), TASK, None, config()).label(random_pairs(rng, 4))
    assert all(r.failed and "3 answers for 4 pairs" in r.error for r in results)


def test_query_budget_counts_the_run_in_the_store(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 10)
    store = QueryStore(tmp_path)
    backend = CountingBackend()
    with pytest.raises(BudgetExhausted, match=r"max_queries=4.*run 'r'"):
        Labeler(backend, TASK, store, config(max_queries=4, max_in_flight=3), run_id="r").label(pairs)
    assert backend.calls == 4 and len(store) == 4

    # A new labeler for the same run starts with the 4 already spent: no call at all.
    later = CountingBackend()
    with pytest.raises(BudgetExhausted):
        Labeler(later, TASK, store, config(max_queries=4), run_id="r").label(pairs)
    assert later.calls == 0
    # The answered pairs stay free to read within the budget.
    assert all(r.from_store for r in Labeler(later, TASK, store, config(max_queries=4), run_id="r").label(pairs[:4]))
    # Another run has its own budget.
    Labeler(later, TASK, store, config(max_queries=6), run_id="r2").label(pairs)
    assert later.calls == 6


@pytest.mark.parametrize(("option", "limit"), [("max_cost_usd", 0.0025), ("max_tokens", 30)])
def test_token_and_cost_budgets(tmp_path: Path, rng: np.random.Generator, option: str, limit: float) -> None:
    # Every answer costs $0.001 and 12 tokens: the limit is crossed by the third answer.
    backend = CountingBackend()
    store = QueryStore(tmp_path)
    with pytest.raises(BudgetExhausted, match=option):
        Labeler(backend, TASK, store, config(max_in_flight=1, **{option: limit}), run_id="r").label(random_pairs(rng, 10))
    assert backend.calls == 3 and len(store) == 3


def test_offline_answers_from_store_only(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 4)
    store = QueryStore(tmp_path)
    Labeler(CountingBackend(), TASK, store, config()).label(pairs[:2])
    backend = CountingBackend()
    results = Labeler(backend, TASK, store, config(offline=True)).label(pairs)
    assert backend.calls == 0
    assert [r.from_store for r in results] == [True, True, False, False]
    assert [r.failed for r in results] == [False, False, True, True]
    assert results[2].error == OFFLINE_ERROR and results[2].label is Label.NONE
    assert len(store) == 2  # offline misses are not written


def test_go_offline_answers_later_calls_from_the_store_only(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 3)
    backend = CountingBackend()
    labeler = Labeler(backend, TASK, QueryStore(tmp_path), config())
    labeler.label(pairs[:1])
    labeler.go_offline()
    results = labeler.label(pairs)
    assert backend.calls == 1 and labeler.config.offline and labeler.config.max_in_flight == config().max_in_flight
    assert [r.from_store for r in results] == [True, False, False]
    assert [r.error for r in results] == [None, OFFLINE_ERROR, OFFLINE_ERROR]


@pytest.mark.parametrize(
    ("label", "reason", "failed", "usable"),
    [(Label.SECOND, None, False, True),
     (Label.NONE, None, False, True),  # a genuine "no difference"
     (Label.NONE, POSITION_FLIP, False, True),  # the two orders disagreed: no difference either
     (Label.NONE, "unparseable", False, False),
     (Label.NONE, "refusal", False, False),
     (Label.NONE, None, True, False)],
)
def test_usable_says_whether_a_result_is_a_preference(label: Label, reason: str | None, failed: bool, usable: bool) -> None:
    assert LabeledQuery("k", Answer(label, abstain_reason=reason), False, failed=failed).usable is usable


def test_both_orders_agree_for_a_consistent_backend(tmp_path: Path, rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 6)
    store = QueryStore(tmp_path)
    labeler = Labeler(CountingBackend(), TASK, store, config(both_orders=True))
    results = labeler.label(pairs)
    assert [r.label for r in results] == [brighter_second(p).label for p in pairs]
    assert labeler.stats.flips == 0 and labeler.stats.flip_rate == 0.0
    assert len(store) == 12 and all(r.swapped_key and r.swapped_key != r.key for r in results)
    assert results[0].answer.input_tokens == 20  # both orders are paid for


def test_both_orders_turn_position_bias_into_no_preference(rng: np.random.Generator) -> None:
    labeler = Labeler(PositionBiasedBackend(), TASK, None, config(both_orders=True))
    results = labeler.label(random_pairs(rng, 5))
    assert all(r.label is Label.NONE and r.answer.abstain_reason == POSITION_FLIP for r in results)
    assert labeler.stats.flips == 5 and labeler.stats.flip_rate == 1.0


def test_combine_orders_cases() -> None:
    def lq(label: Label, reason: str | None = None, prob: float | None = None, failed: bool = False) -> LabeledQuery:
        return LabeledQuery("k", Answer(label, prob, abstain_reason=reason), False, failed=failed, error="e" if failed else None)

    agreed, flipped = combine_orders(lq(Label.SECOND, prob=0.8), lq(Label.FIRST, prob=0.4))
    assert agreed.label is Label.SECOND and not flipped and agreed.answer.prob_second == pytest.approx(0.7)
    unsure, flipped = combine_orders(lq(Label.FIRST), lq(Label.NONE, reason="unparseable"))
    assert unsure.label is Label.NONE and unsure.answer.abstain_reason == "unparseable" and not flipped
    broken, _ = combine_orders(lq(Label.FIRST), lq(Label.SECOND, failed=True))
    assert broken.failed and broken.label is Label.NONE


def test_backoff_delay_full_jitter_and_retry_after(rng: np.random.Generator) -> None:
    draws = [backoff_delay(3, 0.5, 60, None, rng) for _ in range(2000)]
    assert 0 <= min(draws) and max(draws) <= 4.0 and np.mean(draws) == pytest.approx(2.0, rel=0.1)
    assert max(backoff_delay(20, 0.5, 60, None, rng) for _ in range(200)) <= 60
    assert backoff_delay(3, 0.5, 60, 7.5, rng) == 7.5


def test_label_works_from_threads_and_inside_a_running_loop(rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 4)
    expected = [brighter_second(p).label for p in pairs]
    labeler = Labeler(CountingBackend(delay_s=0.01), TASK, None, config())
    out: list[list[Label]] = []
    threads = [threading.Thread(target=lambda: out.append([r.label for r in labeler.label(pairs)])) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert out == [expected] * 3

    async def inside_a_loop() -> list[Label]:
        return [r.label for r in labeler.label(pairs)]  # e.g. a notebook cell

    assert asyncio.run(inside_a_loop()) == expected
    labeler.close()
    labeler.close()


def test_alabel_on_the_callers_loop(rng: np.random.Generator) -> None:
    pairs = random_pairs(rng, 3)

    async def main() -> list[Label]:
        labeler = Labeler(CountingBackend(), TASK, None, config())
        results = await labeler.alabel(pairs)
        await labeler.aclose()
        return [r.label for r in results]

    assert asyncio.run(main()) == [brighter_second(p).label for p in pairs]


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        LabelerConfig(max_in_flight=0)
    with pytest.raises(ConfigError, match="max_cost_usd"):
        LabelerConfig(max_cost_usd=-1)


def test_non_backend_exceptions_propagate_after_in_flight_calls_are_stored(tmp_path: Path, rng: np.random.Generator) -> None:
    store = QueryStore(tmp_path)
    backend = CountingBackend(delay_s=0.02, failures=[RuntimeError("bug in backend")])
    with pytest.raises(RuntimeError, match="bug in backend"):
        Labeler(backend, TASK, store, config(max_in_flight=4)).label(random_pairs(rng, 4))
    assert len(store) == 3  # the three other calls in flight were kept


# --------------------------------------------------------------------------- end to end over HTTP


def test_openai_backend_through_labeler_and_store(tmp_path: Path, rng: np.random.Generator) -> None:
    from rlvlmf.feedback.registry import make_backend
    from rlvlmf.testing.openai_server import FakeOpenAIServer, FakeResponse

    pairs = random_pairs(rng, 6, size=16)
    with FakeOpenAIServer(delay_s=0.05) as server:
        # One 429 with Retry-After and one 500 on the way: both retried, nothing lost.
        server.push(FakeResponse.error(429, "rate limited", retry_after="0.1"), FakeResponse.error(500, "oops"))
        store = QueryStore(tmp_path)
        backend = make_backend(f"openai:fake-vlm@{server.url}")
        with Labeler(backend, TASK, store, config(max_in_flight=3), run_id="e2e") as labeler:
            cold = labeler.label(pairs)
            assert labeler.stats.retries == 2
        assert not any(r.failed for r in cold)
        assert all(r.label is Label.SECOND for r in cold)  # the fake server's default
        assert server.count == 2 * 6 + 2  # two stages per pair, plus the two refused requests
        rows = list(store.iter_queries(run_id="e2e"))
        assert len(rows) == 6 and sum(r.attempts for r in rows) == 6 + 2
        assert all(len(r.stages) == 2 and r.input_tokens > 0 and r.model == "fake-vlm" for r in rows)

        count = server.count
        warm_backend = make_backend(f"openai:fake-vlm@{server.url}")
        with Labeler(warm_backend, TASK, QueryStore(tmp_path), config(), run_id="e2e-warm") as labeler:
            warm = labeler.label(pairs)
        assert server.count == count  # zero calls counted at the server
        assert [r.answer for r in warm] == [r.answer for r in cold]


def test_backend_task_fields_narrow_the_key(tmp_path: Path, rng: np.random.Generator) -> None:
    class GoalOnly(CountingBackend):
        task_fields = ("goal",)

    pairs = random_pairs(rng, 3)
    store = QueryStore(tmp_path)
    Labeler(GoalOnly(), TASK, store, config()).label(pairs)
    rephrased = TaskDescription("drawer-open", TASK.goal, ("a drawer pulled out",), ("a closed drawer",))
    backend = GoalOnly()
    assert all(r.from_store for r in Labeler(backend, rephrased, store, config()).label(pairs))
    phrase_reader = CountingBackend()  # default: the phrases are part of the key
    Labeler(phrase_reader, TASK, store, config()).label(pairs)
    Labeler(phrase_reader, rephrased, store, config()).label(pairs)
    assert backend.calls == 0 and phrase_reader.calls == 6
