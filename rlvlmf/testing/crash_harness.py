"""Kill ``rlvlmf train`` with SIGKILL at chosen moments, resume it each time, and check the books.

The run labels through the ``openai`` backend against a ``FakeOpenAIServer`` whose
``RuleVLM`` answers by a fixed pixel rule and logs when each pair was asked. A kill is
either ``("ask", n)``: SIGKILL while the server handles the n-th pair asked by that
process (so mid-labeling, with calls in flight), or ``("time", s)``: SIGKILL ``s`` seconds
after launch (anywhere: stepping, fitting, writing a checkpoint). After the plan, one last
``--resume`` runs to the end.

``audit_run`` then lists every inconsistency: duplicate queries, an answer asked for again
after it was in the store, a pair asked that never reached the store, a label that breaks
the rule, counters that disagree with the metrics.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rlvlmf.feedback.store import DEFAULT_STORE_DIR, QueryStore
from rlvlmf.testing.rule_vlm import RuleVLM, rule_label

ROOT = Path(__file__).resolve().parents[2]

TINY = [
    "seed_steps=200", "unsup_steps=200", "num_interact=200", "reward_batch=8", "max_feedback=32",
    "eval_every=400", "eval_episodes=2", "checkpoint_every=200", "query_pool_size=32",
    "sac.hidden_sizes=32,32", "sac.batch_size=32", "reward_model.max_epochs=3", "reward_model.frame_size=48",
    "reward_model.conv_channels=4,4,4,4", "labeler.progress=false",
]
"""The tiny pendulum schedule of tests/test_train.py."""

Kill = tuple[str, float]


@dataclass
class CrashLog:
    """What happened to one crash-and-resume run."""

    run_dir: Path
    store_dir: Path
    kills: int = 0
    launches: int = 0
    returncodes: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    stderr: str = ""


def train_command(url: str, out: Path, name: str, store: Path, steps: int, extra: Sequence[str] = ()) -> list[str]:
    """``python -m rlvlmf train`` on the tiny pendulum schedule with the openai backend at ``url``."""
    cmd = [sys.executable, "-m", "rlvlmf", "train", "--preset", "pendulum", "--backend", f"openai:fake-vlm@{url}",
           "--steps", str(steps), "--out", str(out), "--name", name, "--store", str(store), "--no-progress"]
    for override in [*TINY, *extra]:
        cmd += ["--set", override]
    return cmd


def crash_and_resume(url: str, rule: RuleVLM, work: Path, plan: Sequence[Kill], *, steps: int = 600,
                     extra: Sequence[str] = (), name: str = "crashy", env: dict[str, str] | None = None,
                     timeout_s: float = 300.0) -> CrashLog:
    """Run the plan of kills, resuming after each, then finish the run.

    ``extra`` are ``--set`` overrides on top of ``TINY``.

    Raises:
        AssertionError: A launch failed (exit code other than 0 or -SIGKILL), or the run
            did not finish.
    """
    out, store = work / "runs", work / DEFAULT_STORE_DIR
    log = CrashLog(out / name, store)
    fresh = train_command(url, out, name, store, steps, extra)
    resume = [sys.executable, "-m", "rlvlmf", "train", "--resume", str(out / name), "--store", str(store), "--no-progress"]
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def launch() -> subprocess.Popen:
        # A run folder exists (and can be resumed) once its config.json is written.
        cmd = resume if (out / name / "config.json").exists() else fresh
        log.launches += 1
        errors = open(work / f"stderr_{log.launches}.txt", "w")  # noqa: SIM115 - closed after wait
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        proc.errors_file = errors  # type: ignore[attr-defined]
        return proc

    def finish(proc: subprocess.Popen, timeout: float | None) -> int:
        try:
            code = proc.wait(timeout=timeout)
        finally:
            proc.errors_file.close()  # type: ignore[attr-defined]
        log.returncodes.append(code)
        text = Path(proc.errors_file.name).read_text()  # type: ignore[attr-defined]
        log.stderr += text
        assert code in (0, -signal.SIGKILL), f"launch {log.launches} exited {code}:\n{text[-3000:]}"
        return code

    for kind, value in plan:
        proc = launch()
        if kind == "ask":
            base = len(rule.asks)
            fired = threading.Event()

            def trigger(
                count: int, proc: subprocess.Popen = proc, base: int = base, fired: threading.Event = fired, asks: float = value
            ) -> None:
                if count >= base + int(asks) and not fired.is_set():
                    fired.set()
                    os.kill(proc.pid, signal.SIGKILL)

            rule.on_request = trigger
            code = finish(proc, timeout_s)
            rule.on_request = None
        else:
            try:
                proc.wait(timeout=value)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
            code = finish(proc, timeout_s)
        log.kills += int(code == -signal.SIGKILL)
        if code == 0:
            break
    if not (log.run_dir / "summary.json").exists():
        finish(launch(), timeout_s)
    log.wall_s = time.perf_counter() - started
    assert (log.run_dir / "summary.json").exists(), log.stderr[-3000:]
    return log


def quiet(server: object) -> None:
    """Stop a fake server printing a traceback for each connection a killed client left."""
    server._server.handle_error = lambda request, client_address: None  # type: ignore[attr-defined]


def metrics_last(run_dir: Path, column: str) -> float | None:
    """The last logged value of a metrics.csv column."""
    with (run_dir / "metrics.csv").open(newline="") as handle:
        values = [row[column] for row in csv.DictReader(handle) if row.get(column)]
    return float(values[-1]) if values else None


def audit_run(log: CrashLog, rule: RuleVLM) -> tuple[list[str], dict[str, int]]:
    """Every inconsistency of a finished crash-and-resume run, and its figures.

    Returns:
        ``(problems, figures)``; figures: ``rows``, ``asks``, ``asked_again`` (pairs asked
        more than once, each time before its answer was stored), ``lost`` (pairs asked
        that are not in the store), ``paid_twice`` (asks after the answer was stored).
    """
    problems: list[str] = []
    summary = json.loads((log.run_dir / "summary.json").read_text())
    with QueryStore(log.store_dir, create=False) as store:
        rows = list(store.iter_queries())
        by_pair = {(r.first_frame, r.second_frame): r for r in rows}
        if len(by_pair) != len(rows) or len({r.key for r in rows}) != len(rows):
            problems.append(f"duplicate queries: {len(rows)} rows, {len(by_pair)} distinct pairs")
        for row in rows:
            if not row.ok:
                problems.append(f"row {row.key[:8]} is {row.status}: {row.error}")
            elif int(row.label) != rule_label(store.load_frame(row.first_frame), store.load_frame(row.second_frame)):
                problems.append(f"row {row.key[:8]} has label {int(row.label)}, which breaks the rule")
    counts = Counter(ask.pair for ask in rule.asks)
    paid_twice = [ask for ask in rule.asks if ask.pair in by_pair and ask.at > by_pair[ask.pair].created_at]
    lost = [pair for pair in counts if pair not in by_pair]
    if paid_twice:
        problems.append(f"{len(paid_twice)} asks came after the answer was already stored")
    if lost:
        problems.append(f"{len(lost)} pairs were asked but never reached the store")
    for column, key in (("feedback/queries", "queries"), ("feedback/labels", "labels")):
        last = metrics_last(log.run_dir, column)
        if last is None or int(last) != summary[key]:
            problems.append(f"summary {key}={summary[key]} but metrics.csv's last {column} is {last}")
    if summary["labels"] != summary["queries"]:
        problems.append(f"summary labels={summary['labels']} != queries={summary['queries']} (every answer is a label)")
    if not summary["extra"].get("complete"):
        problems.append("the run did not complete")
    figures = {"rows": len(rows), "asks": len(rule.asks), "asked_again": sum(c > 1 for c in counts.values()),
               "lost": len(lost), "paid_twice": len(paid_twice)}
    return problems, figures
