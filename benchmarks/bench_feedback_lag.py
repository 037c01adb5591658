"""Time lost to feedback rounds, blocking (``feedback_lag=0``) vs labelled while training goes on.

Run: .venv/bin/python benchmarks/bench_feedback_lag.py [--preset drawer-open] [--steps 18000]
     [--lag 2000] [--delay 1.0] [--set key=value ...]

Both runs train ``--preset`` with the learned reward, side by side in one invocation, against
the same local OpenAI-compatible server (rlvlmf/testing/openai_server.py, in its own process)
that answers every request after ``--delay`` seconds; the ``openai`` backend's two-stage
protocol makes two requests per pair, so one answer takes ``2 x delay`` (2 s by default). The
server's rule VLM (rlvlmf/testing/rule_vlm.py) answers by brightness: the labels are not the
point, the waiting is. The preset's feedback schedule is kept (MetaWorld: 40 pairs every 4,000
steps); the defaults shorten only the warm-up (1,000 random + 1,000 unsupervised steps) so that
four rounds fit in 18,000 steps, and use 256x256 SAC networks, which a CPU trains at tens of
steps per second.

For each run it prints the wall time, and from metrics.csv the seconds training stood still
for feedback (``feedback/stall_seconds``: pair sampling and rendering, waiting for labels, the
fit and the relabelling), of which waiting for labels (``feedback/wait_seconds``) and the fit
(``reward/fit_seconds``), as a share of the run's wall time.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_labeler import serve  # noqa: E402 - this folder is on sys.path when a benchmark runs

from rlvlmf.training.builder import build_config  # noqa: E402
from rlvlmf.training.loop import run_training  # noqa: E402

DEFAULTS = ["seed_steps=1000", "unsup_steps=1000", "sac.hidden_sizes=256,256", "sac.batch_size=256",
            "eval_every=100000", "eval_episodes=1", "eval_video=false", "labeler.progress=false"]


def column_sum(rows: list[dict[str, str]], column: str) -> float:
    return sum(float(row[column]) for row in rows if row.get(column))


def measure(args: argparse.Namespace, url: str, lag: int, work: Path) -> dict[str, float]:
    overrides = [*DEFAULTS, *args.overrides, f"feedback_lag={lag}"]
    config = build_config(args.preset, overrides, steps=args.steps, backend=f"openai:fake-vlm@{url}")
    run_dir = work / f"lag{lag}"
    started = time.perf_counter()
    summary = run_training(config, run_dir, store_dir=work / f"queries-lag{lag}", export_dir=None, progress=False)
    wall = time.perf_counter() - started
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    rounds = sum(1 for row in rows if row.get("reward/fit_seconds"))
    return {"wall": wall, "steps": summary.steps, "labels": summary.labels, "rounds": rounds,
            "stall": column_sum(rows, "feedback/stall_seconds"), "wait": column_sum(rows, "feedback/wait_seconds"),
            "fit": column_sum(rows, "reward/fit_seconds"), "round": column_sum(rows, "feedback/round_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="drawer-open")
    parser.add_argument("--steps", type=int, default=18_000)
    parser.add_argument("--lag", type=int, default=2000, help="feedback_lag of the overlapped run")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per request (two per answer)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"config overrides after the defaults ({' '.join(DEFAULTS)})")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "not-a-key")  # the local server ignores it
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.delay, child, True), daemon=True)
    server.start()
    url = parent.recv()
    print(f"load average {os.getloadavg()[0]:.1f}; preset {args.preset}, {args.steps} steps, "
          f"{2 * args.delay:.1f} s per answer; overrides: {' '.join([*DEFAULTS, *args.overrides])}", flush=True)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for lag in (0, args.lag):
                results[lag] = result = measure(args, url, lag, Path(tmp))
                print(f"feedback_lag={lag:>5}: {result['steps']} steps, {result['rounds']:.0f} rounds, "
                      f"{result['labels']} labels in {result['wall']:.0f} s ({result['steps'] / result['wall']:.1f} steps/s); "
                      f"training stood still {result['stall']:.1f} s = {100 * result['stall'] / result['wall']:.1f}% "
                      f"(waiting for labels {result['wait']:.1f} s, reward fit {result['fit']:.1f} s); "
                      f"round start to fit {result['round'] / max(result['rounds'], 1):.1f} s per round", flush=True)
    finally:
        parent.send("stop")
        server.join(timeout=10)
    blocking, lagged = results[0], results[args.lag]
    print(f"time lost to feedback: {100 * blocking['stall'] / blocking['wall']:.1f}% blocking, "
          f"{100 * lagged['stall'] / lagged['wall']:.1f}% with feedback_lag={args.lag}; "
          f"wall time ratio lagged/blocking {lagged['wall'] / blocking['wall']:.2f}")


if __name__ == "__main__":
    main()
