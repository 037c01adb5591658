"""The labeler: the one place that caches, batches, throttles, retries and budgets queries.

``Labeler.label(pairs)`` returns one ``LabeledQuery`` per pair, in order:

1. Each pair (and, with ``both_orders``, its swap) gets a store key; an ``ok`` row in the
   store is the answer, with no backend call (a warm re-run makes zero calls).
2. The misses go to the backend in batches of ``backend.max_batch``, at most
   ``max_in_flight`` batches at once, started no faster than ``requests_per_minute``.
3. ``TransientBackendError`` (timeouts, 408/429/5xx) is retried up to ``max_retries`` times
   after ``Retry-After`` when the server sent one, else after an exponential backoff with
   full jitter. Anything else, or a batch out of retries, is a *failed* query: stored with
   ``status='failed'`` and its error, returned with ``failed=True`` and ``Label.NONE``, and
   asked again by the next run. A failure is never turned into a label.
4. Every answer is committed to the store as soon as it arrives, before it is returned.
5. Budgets (``max_queries``, ``max_tokens``, ``max_cost_usd``) cover everything the store
   holds for this ``run_id``. When one is reached no new batch starts; the batches in flight
   finish and are stored; then ``BudgetExhausted`` is raised. Token and dollar budgets can
   be overshot by the batches that were in flight when the limit was crossed.
6. ``offline=True`` answers from the store only: a miss is returned as failed with the error
   ``"offline: not in store"`` (not raised, so a mostly warm run can go on), and is not
   written to the store.

With ``both_orders`` the pair is also asked swapped (its own store row); the label is kept
when both orders agree, else it is ``Label.NONE`` with ``abstain_reason="position flip"``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import BudgetExhausted, ConfigError
from rlvlmf.feedback.base import Answer, Backend, BackendError, FramePair, Label, TransientBackendError
from rlvlmf.feedback.store import DEFAULT_TASK_FIELDS, QueryStore, RunUsage, StoredQuery, frame_hash, ground_truth, query_key

logger = logging.getLogger(__name__)

OFFLINE_ERROR = "offline: not in store"
POSITION_FLIP = "position flip"

T = TypeVar("T")


@dataclass(frozen=True)
class LabelerConfig:
    """How the labeler spends calls.

    Attributes:
        max_in_flight: Backend calls (batches) running at once.
        requests_per_minute: Start at most this many backend calls a minute (retries
            included); ``None`` for no limit. One call is one ``Backend.alabel`` batch: a
            two-stage chat query makes two HTTP requests per pair.
        max_retries: Retries of a batch after a transient error (0 = try once).
        backoff_base_s: First backoff ceiling; doubles each retry (full jitter below it).
        backoff_max_s: Largest backoff ceiling.
        max_queries: Budget of queries for the run: pairs sent to the backend, one per order,
            failed ones included (store hits are free); ``None`` = no limit.
        max_tokens: Budget of input + output tokens for the run.
        max_cost_usd: Budget of estimated dollars for the run.
        offline: Answer only from the store; misses come back failed.
        both_orders: Ask each pair in both orders and keep only agreeing labels.
        labeler_name: ``labeler`` column of the rows written (``"vlm"``; people use ``"human"``).
        progress: Show a tqdm bar when at least ``progress_min_queries`` queries go out.
        progress_min_queries: Smallest number of backend queries that gets a bar.
    """

    max_in_flight: int = 8
    requests_per_minute: float | None = None
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_queries: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    offline: bool = False
    both_orders: bool = False
    labeler_name: str = "vlm"
    progress: bool = True
    progress_min_queries: int = 8

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ConfigError(f"requests_per_minute must be > 0 or None, got {self.requests_per_minute}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 <= self.backoff_base_s <= self.backoff_max_s:
            raise ConfigError(f"need 0 <= backoff_base_s <= backoff_max_s, got {self.backoff_base_s}, {self.backoff_max_s}")
        for name in ("max_queries", "max_tokens", "max_cost_usd"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0 or None, got {value}")
        if not self.labeler_name:
            raise ConfigError("labeler_name must not be empty")


@dataclass
class LabeledQuery:
    """The labeler's result for one pair.

    Attributes:
        key: Store key of the pair in the order given.
        answer: The answer (combined over both orders with ``both_orders``); ``Label.NONE``
            for failed queries.
        from_store: Whether no backend call was needed.
        failed: Whether the query failed for good (``error`` says why).
        error: The failure, or ``None``.
        gt_label: Ground-truth label from the pair's rewards, ``None`` without rewards.
        swapped_key: Store key of the swapped order (``both_orders`` only).
    """

    key: str
    answer: Answer
    from_store: bool
    failed: bool = False
    error: str | None = None
    gt_label: Label | None = None
    swapped_key: str | None = None

    @property
    def label(self) -> Label:
        """Shortcut for ``answer.label``."""
        return self.answer.label

    @property
    def usable(self) -> bool:
        """Whether this is a preference to learn from: answered, and a real label or a genuine
        "no difference" (a position flip counts as one). Failures and abstains carry none."""
        return not self.failed and self.answer.abstain_reason in (None, POSITION_FLIP)


@dataclass
class LabelerStats:
    """Running counts over a labeler's life (queries are pairs in one order).

    Attributes:
        backend_calls: ``Backend.alabel`` calls made, retries included.
        queried: Queries answered by the backend.
        from_store: Queries answered from the store.
        failed: Queries that failed for good (offline misses included).
        retries: Retries after transient errors.
        abstains: Answered queries with an ``abstain_reason``.
        compared: Pairs asked in both orders with a real label both times.
        flips: Of those, pairs whose two labels disagreed.
        input_tokens: Prompt tokens of the backend's answers.
        output_tokens: Completion tokens of the backend's answers.
        cost_usd: Estimated dollars of the backend's answers.
    """

    backend_calls: int = 0
    queried: int = 0
    from_store: int = 0
    failed: int = 0
    retries: int = 0
    abstains: int = 0
    compared: int = 0
    flips: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def flip_rate(self) -> float | None:
        """Fraction of both-order pairs whose labels disagreed, ``None`` before any."""
        return self.flips / self.compared if self.compared else None


# --------------------------------------------------------------------------- pure helpers


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None, rng: np.random.Generator) -> float:
    """Seconds to wait before retry number ``attempt + 1``.

    Args:
        attempt: Retries done so far (0 before the first retry).
        base_s: Backoff ceiling of the first retry.
        max_s: Largest ceiling.
        retry_after: The server's Retry-After in seconds, honoured as given when present.
        rng: Source of the jitter.

    Returns:
        ``retry_after`` if given, else a uniform draw in ``[0, min(max_s, base_s * 2**attempt)]``
        (full jitter, so clients hit by the same outage spread out).
    """
    if retry_after is not None:
        return max(0.0, float(retry_after))
    return float(rng.uniform(0.0, min(max_s, base_s * 2.0**attempt)))


def flip_label(label: Label) -> Label:
    """The same preference seen from the swapped order."""
    return {Label.FIRST: Label.SECOND, Label.SECOND: Label.FIRST}.get(label, Label.NONE)


def combine_orders(forward: LabeledQuery, backward: LabeledQuery) -> tuple[LabeledQuery, bool]:
    """Merge the answers for a pair and for its swap.

    Args:
        forward: Result for the pair as given.
        backward: Result for ``pair.swapped()`` (its label refers to the swapped order).

    Returns:
        ``(result, flipped)``. Both labels real and equal (after un-swapping): that label.
        Both real and different: ``Label.NONE`` with ``abstain_reason="position flip"`` and
        ``flipped=True``. Otherwise ``Label.NONE`` with the abstain reason of whichever side
        gave none. A failure on either side makes the result failed. Tokens, cost, latency
        and stages add up; ``prob_second`` is the mean of both when both have one.
    """
    a, b = forward.answer, backward.answer
    b_label = flip_label(b.label)
    failed = forward.failed or backward.failed
    flipped = False
    reason: str | None = None
    if failed:
        label = Label.NONE
    elif a.label is not Label.NONE and b_label is not Label.NONE:
        flipped = a.label != b_label
        label = Label.NONE if flipped else a.label
        reason = POSITION_FLIP if flipped else None
    else:
        label = Label.NONE
        reason = a.abstain_reason if a.label is Label.NONE else b.abstain_reason
    probs = [p for p in (a.prob_second, None if b.prob_second is None else 1.0 - b.prob_second) if p is not None]
    answer = Answer(
        label=label,
        prob_second=float(np.mean(probs)) if probs else None,
        stages=tuple(a.stages) + tuple(b.stages),
        abstain_reason=reason,
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        latency_s=a.latency_s + b.latency_s,
        cost_usd=a.cost_usd + b.cost_usd,
        meta={"orders": [{"label": int(a.label), **a.meta}, {"label": int(b.label), **b.meta}]},
    )
    errors = [e for e in (forward.error, backward.error) if e]
    result = LabeledQuery(
        key=forward.key,
        answer=answer,
        from_store=forward.from_store and backward.from_store,
        failed=failed,
        error="; ".join(errors) or None,
        gt_label=forward.gt_label,
        swapped_key=backward.key,
    )
    return result, flipped


class RateLimiter:
    """Spaces call starts at least ``60 / requests_per_minute`` seconds apart."""

    def __init__(self, requests_per_minute: float | None) -> None:
        self.interval = 0.0 if requests_per_minute is None else 60.0 / requests_per_minute
        self._next = 0.0

    async def acquire(self) -> None:
        """Wait for the next free slot."""
        if self.interval <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next)
        self._next = start + self.interval  # claimed before sleeping, so no lock is needed
        if start > now:
            await asyncio.sleep(start - now)


# --------------------------------------------------------------------------- the labeler


@dataclass
class _Query:
    """One pair in one order, on its way through the labeler."""

    pair: FramePair
    key: str
    hashes: tuple[str, str]
    result: LabeledQuery | None = None


def _result_of(query: _Query) -> LabeledQuery:
    """The result of a query that has been through the store and the backend."""
    assert query.result is not None, "every query is answered, failed or found in the store before results are read"
    return query.result


class Labeler:
    """Labels frame pairs with a backend, through the store, under budgets."""

    def __init__(
        self,
        backend: Backend,
        task: TaskDescription,
        store: QueryStore | None = None,
        config: LabelerConfig | None = None,
        run_id: str | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Create a labeler.

        Args:
            backend: Source of answers.
            task: The task every pair is asked about.
            store: Query store to read and write; ``None`` keeps nothing (and then
                ``offline`` fails every query).
            config: Limits and options.
            run_id: Name of the run that pays; budgets count this run's rows in the store.
            rng: Source of the backoff jitter.
        """
        self.backend = backend
        self.task = task
        self.store = store
        self.config = config or LabelerConfig()
        self.run_id = run_id
        self.stats = LabelerStats()
        self._rng = rng if rng is not None else np.random.default_rng()
        self._identity = backend.identity()
        self._task_fields = tuple(getattr(backend, "task_fields", DEFAULT_TASK_FIELDS))
        self._limiter = RateLimiter(self.config.requests_per_minute)
        # What the run has spent (its earlier rows included), and the queries started but not yet stored.
        self._spent = store.run_usage(run_id) if store is not None and run_id is not None else RunUsage()
        self._reserved = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()

    # ----------------------------------------------------------------- public API

    def label(self, pairs: Sequence[FramePair]) -> list[LabeledQuery]:
        """Label pairs, blocking; callable from any thread (see ``alabel``).

        The work runs on the labeler's own event-loop thread, so backend connections stay on
        one loop across calls. Use either ``label`` or ``alabel`` with one labeler.
        """
        return self._run_sync(self.alabel(pairs))

    def submit(self, pairs: Sequence[FramePair]) -> concurrent.futures.Future[list[LabeledQuery]]:
        """Start labelling pairs on the labeler's event-loop thread and return at once.

        ``future.result()`` gives what ``label`` would (and raises ``BudgetExhausted`` the same
        way); training goes on meanwhile. Every answer is in the store as soon as it arrives,
        so cancelling the future (or a killed process) loses only unanswered queries.
        """
        return self._submit(self.alabel(pairs))

    async def alabel(self, pairs: Sequence[FramePair]) -> list[LabeledQuery]:
        """Label pairs: store first, then the backend for the misses.

        Args:
            pairs: Pairs to label.

        Returns:
            One result per pair, in order.

        Raises:
            BudgetExhausted: A budget was reached; everything answered is in the store.
        """
        pairs = list(pairs)
        per_pair: list[list[_Query]] = []
        unique: dict[str, _Query] = {}
        for pair in pairs:
            oriented = [pair, pair.swapped()] if self.config.both_orders else [pair]
            queries = []
            for shown in oriented:
                hashes = (frame_hash(shown.first), frame_hash(shown.second))
                key = query_key(self._identity, self.task, *hashes, task_fields=self._task_fields,
                                pair_identity=self.backend.pair_identity(shown))
                queries.append(unique.setdefault(key, _Query(shown, key, hashes)))
            per_pair.append(queries)

        stored = self.store.get_many(list(unique)) if self.store is not None else {}
        misses = [query for query in unique.values() if not self._from_store(query, stored.get(query.key))]
        if self.config.offline:
            for query in misses:
                query.result = self._failed(query, OFFLINE_ERROR)
        elif misses:
            await self._ask(misses)

        results = []
        for queries in per_pair:
            if self.config.both_orders:
                result, flipped = combine_orders(_result_of(queries[0]), _result_of(queries[1]))
                compared = not result.failed and (flipped or result.label is not Label.NONE)
                self.stats.compared += int(compared)
                self.stats.flips += int(flipped)
            else:
                result = _result_of(queries[0])
            results.append(result)
        return results

    def go_offline(self) -> None:
        """Answer from the store only from now on (misses come back failed), e.g. once a budget ran out."""
        self.config = replace(self.config, offline=True)

    async def aclose(self) -> None:
        """Close the backend (for users of ``alabel``)."""
        await self.backend.aclose()

    def close(self) -> None:
        """Close the backend and stop the labeler's event-loop thread. Safe to call twice."""
        self._run_sync(self.backend.aclose())
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._loop_thread is not None  # started with the loop
            self._loop_thread.join()
            self._loop.close()
            self._loop = self._loop_thread = None

    def __enter__(self) -> Labeler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- store side

    def _from_store(self, query: _Query, row: StoredQuery | None) -> bool:
        if row is None or not row.ok:
            return False
        query.result = LabeledQuery(query.key, row.answer(), from_store=True, gt_label=ground_truth(query.pair)[0])
        self.stats.from_store += 1
        return True

    def _failed(self, query: _Query, error: str) -> LabeledQuery:
        self.stats.failed += 1
        return LabeledQuery(query.key, Answer(Label.NONE), False, failed=True, error=error, gt_label=ground_truth(query.pair)[0])

    def _write_frames(self, queries: Sequence[_Query]) -> None:
        assert self.store is not None  # called only for a labeler with a store
        for query in queries:
            self.store.put_frame(query.pair.first, query.hashes[0])
            self.store.put_frame(query.pair.second, query.hashes[1])

    def _commit(self, query: _Query, answer: Answer | None, attempts: int, error: str | None) -> None:
        """Store one answer (or failure), then account for it and make it the query's result."""
        if self.store is not None:
            self.store.record(
                query.key,
                query.pair,
                self.task,
                self._identity,
                answer,
                run_id=self.run_id,
                labeler=self.config.labeler_name,
                attempts=attempts,
                error=error,
                frame_hashes=query.hashes,
            )
        self._spent = self._spent.add(answer if error is None else None)
        if error is not None:
            query.result = self._failed(query, error)
            return
        assert answer is not None  # no error: the backend answered
        self.stats.queried += 1
        self.stats.abstains += int(answer.abstain_reason is not None)
        self.stats.input_tokens += answer.input_tokens
        self.stats.output_tokens += answer.output_tokens
        self.stats.cost_usd += answer.cost_usd
        query.result = LabeledQuery(query.key, answer, from_store=False, gt_label=ground_truth(query.pair)[0])

    # ----------------------------------------------------------------- backend side

    def _budget_cut(self, size: int) -> tuple[int, str | None]:
        """How many of the next ``size`` queries may start, and the budget message if cut."""
        config, usage = self.config, self._spent
        run = f"run {self.run_id!r}" if self.run_id else "this labeler"
        where = f"; answers so far are in the store {self.store.root}" if self.store is not None else ""
        advice = f"{where}. Raise the budget or use a new run id to go on."
        if config.max_tokens is not None and usage.tokens >= config.max_tokens:
            return 0, f"token budget reached: {usage.tokens} of max_tokens={config.max_tokens} used by {run}{advice}"
        if config.max_cost_usd is not None and usage.cost_usd >= config.max_cost_usd:
            return 0, f"cost budget reached: ${usage.cost_usd:.4f} of max_cost_usd={config.max_cost_usd} used by {run}{advice}"
        if config.max_queries is not None:
            left = config.max_queries - usage.queries - self._reserved
            if left < size:
                return max(left, 0), f"query budget reached: max_queries={config.max_queries} used by {run}{advice}"
        return size, None

    async def _ask(self, misses: list[_Query]) -> None:
        batch = max(1, int(getattr(self.backend, "max_batch", 1)))
        chunks = [misses[i : i + batch] for i in range(0, len(misses), batch)]
        bar = tqdm(
            total=len(misses),
            desc=f"labeling with {self._identity.get('family', 'backend')}",
            unit="query",
            leave=False,
            # None: drawn only on a terminal, never as escape codes in a log file.
            disable=True if not self.config.progress or len(misses) < self.config.progress_min_queries else None,
        )
        slots = asyncio.Semaphore(self.config.max_in_flight)
        tasks: list[asyncio.Task[None]] = []
        budget_message = None
        try:
            for chunk in chunks:
                await slots.acquire()
                allowed, budget_message = self._budget_cut(len(chunk))
                if allowed == 0:
                    slots.release()
                    break
                chunk = chunk[:allowed]
                self._reserved += len(chunk)
                tasks.append(asyncio.create_task(self._run_chunk(chunk, slots, bar)))
                if budget_message:
                    break
        finally:
            # Let every call in flight finish and be stored, even when cancelled or over budget.
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if budget_message:
            raise BudgetExhausted(budget_message)

    async def _run_chunk(self, chunk: list[_Query], slots: asyncio.Semaphore, bar: tqdm) -> None:
        try:
            frames = asyncio.create_task(asyncio.to_thread(self._write_frames, chunk)) if self.store is not None else None
            answers, attempts, error = await self._call_with_retries(chunk)
            if frames is not None:
                await frames
            for index, query in enumerate(chunk):
                self._commit(query, None if answers is None else answers[index], attempts, error)
            bar.update(len(chunk))
        finally:
            self._reserved -= len(chunk)
            slots.release()

    async def _call_with_retries(self, chunk: list[_Query]) -> tuple[list[Answer] | None, int, str | None]:
        """Returns ``(answers, attempts, error)``; ``answers`` is ``None`` exactly when ``error`` is set."""
        pairs = [query.pair for query in chunk]
        attempt = 0
        while True:
            await self._limiter.acquire()
            self.stats.backend_calls += 1
            try:
                answers = await self.backend.alabel(pairs, self.task)
            except TransientBackendError as exc:
                if attempt >= self.config.max_retries:
                    return None, attempt + 1, f"{type(exc).__name__}: {exc} (gave up after {attempt + 1} attempts)"
                delay = backoff_delay(attempt, self.config.backoff_base_s, self.config.backoff_max_s, exc.retry_after, self._rng)
                logger.debug("transient backend error (%s); retry %d in %.2fs", exc, attempt + 1, delay)
                self.stats.retries += 1
                attempt += 1
                await asyncio.sleep(delay)
                continue
            except BackendError as exc:
                return None, attempt + 1, f"{type(exc).__name__}: {exc}"
            if len(answers) != len(pairs):
                return None, attempt + 1, f"backend returned {len(answers)} answers for {len(pairs)} pairs"
            return list(answers), attempt + 1, None

    # ----------------------------------------------------------------- event loop

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(target=self._loop.run_forever, name="rlvlmf-labeler", daemon=True)
                self._loop_thread.start()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _run_sync(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = self._submit(coroutine)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise
