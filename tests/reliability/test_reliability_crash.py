"""``kill -9`` during a training run, then ``--resume``: nothing paid for is lost or bought twice.

The run (``python -m rlvlmf train``, tiny pendulum schedule) labels through the openai
backend against a local server answering by a pixel rule. It is killed mid-labeling (while
the server handles a request) and at a random moment, resumed each time, and finally run to
the end. It must end exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlvlmf.feedback.store import QueryStore
from rlvlmf.testing.crash_harness import TINY, audit_run, crash_and_resume, quiet
from rlvlmf.testing.openai_server import FakeOpenAIServer
from rlvlmf.testing.rule_vlm import RuleVLM
from rlvlmf.training.builder import build_config
from rlvlmf.training.loop import run_training

STEPS = 400
SHORT = ["seed_steps=100", "unsup_steps=100"]  # feedback rounds at steps 200 and 400; checkpoints at 200 and 400


def _pairs(store_dir: Path) -> set[tuple[str, str]]:
    with QueryStore(store_dir, create=False) as store:
        return {(row.first_frame, row.second_frame) for row in store.iter_queries()}


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    # Two kills while a query is being answered, one at a random time. The timed kill lands in
    # the first 2.5 s of a launch (start-up, loading the checkpoint or the first steps): a
    # resumed launch on an idle machine can finish in well under 10 s, and a kill that comes
    # after the run ended would not be a kill.
    plan = [("ask", int(rng.integers(1, 6))), ("time", float(rng.uniform(0.5, 2.5))), ("ask", int(rng.integers(2, 8)))]
    rule = RuleVLM()
    with FakeOpenAIServer(responder=rule) as server:
        quiet(server)
        log = crash_and_resume(server.url, rule, tmp_path / "crash", plan, steps=STEPS, extra=SHORT)
        problems, figures = audit_run(log, rule)
        assert not problems, problems
        assert log.kills >= 2, log.returncodes
        assert figures["lost"] == 0 and figures["paid_twice"] == 0

        straight_rule = RuleVLM()
        server.responder = straight_rule
        config = build_config("pendulum", [*TINY, *SHORT], steps=STEPS, backend=f"openai:fake-vlm@{server.url}")
        run_training(config, tmp_path / "straight" / "crashy", store_dir=tmp_path / "straight" / "q", export_dir=None,
                     progress=False)

    crashed = json.loads((log.run_dir / "summary.json").read_text())
    straight = json.loads((tmp_path / "straight" / "crashy" / "summary.json").read_text())
    for key in ("steps", "episodes", "queries", "labels", "eval_return_mean", "label_accuracy"):
        assert crashed[key] == straight[key], key
    # The same queries, each stored once; every pair the server was asked is among them.
    assert _pairs(log.store_dir) == _pairs(tmp_path / "straight" / "q") == {a.pair for a in rule.asks}
    assert len(straight_rule.asks) == figures["rows"]
