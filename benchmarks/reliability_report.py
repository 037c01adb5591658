"""Reliability figures, measured: answers fuzzed, faults injected, kills survived, items lost, peak RSS.

Everything runs locally against the fake provider servers of rlvlmf/testing (no network):

1. fuzz   - seeded hostile answers (empty, ~1 MB, invalid UTF-8, lone surrogates, wrong
            JSON, contradictory, prompt injection, HTML/script) through ``parse_label`` and
            through the openai, gemini and anthropic backends + labeler + store; counts
            crashes and answers stored other than they must be.
2. faults - random 429 (with/without Retry-After), 500, 503, stalls past the timeout and
            connections closed mid-body; counts faults, retries, failed and mislabeled pairs.
3. crash  - ``rlvlmf train`` killed with SIGKILL mid-labeling and at random moments, resumed
            each time; counts kills, answers lost, answers paid for twice, and compares each
            finished run with an uninterrupted one.
4. load   - the labeler with 256 calls in flight on chunks of fresh pairs, in a child
            process: pairs/s and peak RSS (VmHWM) after 1,000 and after 4,000 pairs.

    .venv/bin/python benchmarks/reliability_report.py                # everything (~10 min on 2 busy cores)
    .venv/bin/python benchmarks/reliability_report.py --only fuzz load
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlvlmf.feedback.base import FramePair, Label  # noqa: E402
from rlvlmf.feedback.labeler import Labeler, LabelerConfig  # noqa: E402
from rlvlmf.feedback.parsing import parse_label  # noqa: E402
from rlvlmf.feedback.store import QueryStore  # noqa: E402
from rlvlmf.testing.crash_harness import TINY, audit_run, crash_and_resume, quiet  # noqa: E402
from rlvlmf.testing.faults import FaultInjector, rule_responder  # noqa: E402
from rlvlmf.testing.fuzz_answers import AnswerFuzzer  # noqa: E402
from rlvlmf.testing.fuzz_http import FAMILIES, TASK, check_outcomes, fake_server, label_fuzzed, make_fuzz_backend  # noqa: E402
from rlvlmf.testing.openai_server import FakeOpenAIServer  # noqa: E402
from rlvlmf.testing.rule_vlm import RuleVLM, rule_label  # noqa: E402

SECTIONS = ("fuzz", "faults", "crash", "load")


def fuzz(n_parsed: int, n_http: int, seed: int) -> dict[str, int]:
    print(f"== fuzz: {n_parsed} answers through parse_label, {n_http} per backend over HTTP")
    answers = AnswerFuzzer(np.random.default_rng(seed)).many(n_parsed)
    crashes = wrong = 0
    for answer in answers:
        try:
            parsed = parse_label(answer.text)
        except Exception:  # noqa: BLE001 - counted, never expected
            crashes += 1
            continue
        expected = Label.NONE if answer.label is None else answer.label
        wrong += parsed.label != expected or parsed.reason != answer.reason
    kinds = Counter(a.kind for a in answers)
    print(f"  parse_label   {n_parsed} answers ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}): "
          f"{crashes} crashes, {wrong} read other than they must be")
    totals = {"fuzzed": n_parsed, "crashes": crashes, "wrong": wrong}
    for index, family in enumerate(FAMILIES):
        answers = AnswerFuzzer(np.random.default_rng(seed + 1 + index)).many(n_http)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as store_dir:
            try:
                results, store = label_fuzzed(family, answers, Path(store_dir) / "q")
                with store:
                    problems = check_outcomes(answers, results, store)
                    stats = store.stats()
                crashed = 0
            except Exception as exc:  # noqa: BLE001
                problems, crashed, stats = [repr(exc)], 1, None
        huge = sum(a.kind == "huge" for a in answers)
        labelled = sum(a.label is not None for a in answers)
        print(f"  {family:<13} {n_http} answers ({huge} of ~1 MB, {labelled} clear labels) "
              f"in {time.perf_counter() - start:.1f} s: "
              f"{crashed} crashes, {len(problems)} stored other than they must be"
              + (f"; store: {stats.ok} ok rows, abstains {dict(stats.abstains)}" if stats else ""))
        for problem in problems[:5]:
            print(f"    {problem}")
        totals["fuzzed"] += n_http
        totals["crashes"] += crashed
        totals["wrong"] += len(problems)
    return totals


def faults(sizes: dict[str, int], seed: int) -> dict[str, int]:
    print("== faults: 35% of requests get 429 (+/- Retry-After), 500, 503, a stall past the 0.4 s timeout or a drop")
    totals = Counter()
    for index, (family, n_pairs) in enumerate(sizes.items()):
        rng = np.random.default_rng(seed + index)
        pairs = [FramePair(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
                 for _ in range(n_pairs)]
        expected = [Label(rule_label(p.first, p.second)) for p in pairs]
        injector = FaultInjector(family, rule_responder(family), rng, rate=0.35)
        config = LabelerConfig(max_in_flight=32, max_retries=3, backoff_base_s=0.005, backoff_max_s=0.05, progress=False)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as store_dir, QueryStore(store_dir) as store:
            server = fake_server(family, [])
            server.responder = injector
            with server, Labeler(make_fuzz_backend(family, server.url, timeout_s=0.4), TASK, store, config,
                                 run_id="faults", rng=rng) as labeler:
                results = labeler.label(pairs)
            rows = store.get_many([r.key for r in results])
            stats = labeler.stats
        failed = sum(r.failed for r in results)
        mislabeled = sum(
            not r.failed and (r.label != e or r.answer.abstain_reason is not None) for r, e in zip(results, expected)
        )
        unrecorded = sum(r.key not in rows for r in results)
        attempts_ok = stats.retries == sum(row.attempts - 1 for row in rows.values())
        print(f"  {family:<10} {n_pairs} pairs in {time.perf_counter() - start:.1f} s: {injector.total_injected} faults "
              f"({', '.join(f'{k} {v}' for k, v in sorted(injector.injected.items()))}); {stats.retries} retries; "
              f"{n_pairs - failed} labeled, {failed} failed after 4 attempts, {mislabeled} mislabeled, {unrecorded} unrecorded; "
              f"attempts column {'matches' if attempts_ok else 'DISAGREES WITH'} the retry count")
        totals.update(injected=injector.total_injected, retries=stats.retries, failed=failed, mislabeled=mislabeled,
                      unrecorded=unrecorded, pairs=n_pairs, attempts_mismatch=int(not attempts_ok))
    return dict(totals)


def crash(kills_wanted: int, seed: int) -> dict[str, int]:
    print(f"== crash: rlvlmf train killed with SIGKILL until {kills_wanted}+ kills, resumed after each")
    steps, extra = 600, ["seed_steps=100", "unsup_steps=100", "max_feedback=64"]  # rounds at 200, 400, 600
    rng = np.random.default_rng(seed)
    totals = Counter()
    with tempfile.TemporaryDirectory() as work_dir, FakeOpenAIServer() as server:
        quiet(server)
        work = Path(work_dir)
        straight_rule = RuleVLM()
        server.responder = straight_rule
        from rlvlmf.training.builder import build_config
        from rlvlmf.training.loop import run_training

        config = build_config("pendulum", [*TINY, *extra], steps=steps, backend=f"openai:fake-vlm@{server.url}")
        run_training(config, work / "straight" / "crashy", store_dir=work / "straight" / "q", export_dir=None, progress=False)
        straight = json.loads((work / "straight" / "crashy" / "summary.json").read_text())
        with QueryStore(work / "straight" / "q", create=False) as store:
            straight_pairs = {(r.first_frame, r.second_frame) for r in store.iter_queries()}
        run = 0
        while totals["kills"] < kills_wanted and run < 20:
            run += 1
            plan = [
                ("ask", int(rng.integers(1, 5))) if i % 2 == 0 else ("time", float(rng.uniform(4.0, 14.0))) for i in range(10)
            ]
            rule = RuleVLM()
            server.responder = rule
            log = crash_and_resume(server.url, rule, work / f"crash{run}", plan, steps=steps, extra=extra)
            problems, figures = audit_run(log, rule)
            summary = json.loads((log.run_dir / "summary.json").read_text())
            with QueryStore(log.store_dir, create=False) as store:
                pairs = {(r.first_frame, r.second_frame) for r in store.iter_queries()}
            same = all(summary[k] == straight[k] for k in ("steps", "episodes", "queries", "labels", "eval_return_mean"))
            missing = len(straight_pairs - pairs)
            print(f"  run {run}: {log.kills} kills in {log.launches} launches, {log.wall_s:.0f} s; "
                  f"{figures['rows']} answers stored, "
                  f"{figures['asks']} asks ({figures['asked_again']} pairs re-asked after a kill took their call), "
                  f"{figures['paid_twice']} asked after being stored, {figures['lost']} asked but not stored, "
                  f"{missing} of the uninterrupted run's answers missing; summary {'equals' if same else 'DIFFERS FROM'} "
                  f"the uninterrupted run's; {len(problems)} problems")
            for problem in problems[:5]:
                print(f"    {problem}")
            totals.update(
                kills=log.kills, launches=log.launches, lost=figures["lost"] + missing, paid_twice=figures["paid_twice"],
                problems=len(problems), differs=int(not same), runs=1,
            )
    return dict(totals)


def load(chunks: int, chunk: int, in_flight: int, delay_s: float) -> dict[str, float]:
    print(f"== load: {chunks} chunks of {chunk} fresh pairs, {in_flight} calls in flight, server latency {delay_s} s")
    with FakeOpenAIServer(delay_s=delay_s) as server:
        command = [sys.executable, "-m", "rlvlmf.testing.load_client", server.url, "--chunks", str(chunks),
                   "--chunk-size", str(chunk), "--in-flight", str(in_flight)]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seen = server.max_in_flight
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    print(f"  before labeling: peak RSS {lines[0]['VmHWM']:.1f} MiB")
    for line in lines:
        if "pairs_per_s" in line:
            print(f"  after {line['pairs']:>5} pairs: {line['pairs_per_s']:6.0f} pairs/s, {line['failed']} failed, "
                  f"peak RSS {line['VmHWM']:.1f} MiB, RSS {line['VmRSS']:.1f} MiB")
    rounds = [line for line in lines if "pairs_per_s" in line]
    print(f"  server saw at most {seen} requests at once; growth of peak RSS from {rounds[0]['pairs']} to "
          f"{rounds[-1]['pairs']} pairs: {rounds[-1]['VmHWM'] - rounds[0]['VmHWM']:+.1f} MiB")
    return {"first_hwm": rounds[0]["VmHWM"], "last_hwm": rounds[-1]["VmHWM"], "first_pairs": rounds[0]["pairs"],
            "last_pairs": rounds[-1]["pairs"], "max_in_flight": seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--parsed", type=int, default=3000, help="answers through parse_label")
    parser.add_argument("--per-backend", type=int, default=1000, help="answers per backend over HTTP")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--load-chunks", type=int, default=4)
    parser.add_argument("--load-chunk", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    lines = []
    if "fuzz" in args.only:
        f = fuzz(args.parsed, args.per_backend, args.seed)
        lines.append(f"answers fuzzed      {f['fuzzed']} ({f['crashes']} crashes, {f['wrong']} recorded other than they must be)")
    if "faults" in args.only:
        f = faults({"openai": 500, "gemini": 200, "anthropic": 200}, args.seed)
        lines.append(f"faults injected     {f['injected']} over {f['pairs']} pairs ({f['retries']} retries, {f['failed']} failed "
                     f"and recorded, {f['mislabeled']} mislabeled, {f['unrecorded']} unrecorded)")
    if "crash" in args.only:
        c = crash(args.kills, args.seed)
        lines.append(f"kills survived      {c['kills']} (SIGKILL, {c['runs']} runs, {c['launches']} launches; "
                     f"{c['differs']} runs ended differently from the uninterrupted one, {c['problems']} problems)")
        lines.append(f"items lost          {c['lost']} (answers asked again after being stored: {c['paid_twice']})")
    if "load" in args.only:
        m = load(args.load_chunks, args.load_chunk, 256, 0.25)
        lines.append(f"peak RSS under load {m['first_hwm']:.1f} MiB after {m['first_pairs']} pairs, "
                     f"{m['last_hwm']:.1f} MiB after {m['last_pairs']} (256 in flight; server saw {m['max_in_flight']} at once)")
    print("== summary")
    for line in lines:
        print(f"  {line}")


if __name__ == "__main__":
    main()
