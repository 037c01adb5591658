"""End-to-end training runs on a tiny schedule: artefacts, exact resume, no repeated queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.errors import ConfigError, UnknownNameError, UserError
from rlvlmf.feedback.store import QueryStore
from rlvlmf.training.buffer import ReplayBuffer
from rlvlmf.training.builder import build_config
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.loop import run_training

TINY = [
    "seed_steps=200", "unsup_steps=200", "num_interact=200", "reward_batch=8", "max_feedback=32",
    "eval_every=400", "eval_episodes=2", "checkpoint_every=200", "query_pool_size=32",
    "sac.hidden_sizes=32,32", "sac.batch_size=32", "reward_model.max_epochs=3", "reward_model.frame_size=48",
    "reward_model.conv_channels=4,4,4,4", "labeler.progress=false",
]


def tiny_config(steps: int = 1000, **fields):
    return build_config("pendulum", TINY, steps=steps, **fields)


def _eval_returns(run_dir: Path) -> list[float]:
    return [json.loads(line)["return_mean"] for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def test_short_run_writes_every_artefact(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    summary = run_training(tiny_config(), run_dir, store_dir=tmp_path / "q", export_dir=tmp_path / "rm", progress=False)
    assert summary.extra["complete"] and summary.steps == 1000 and summary.episodes == 5
    # Rounds at steps 400, 600, 800, 1000: up to 8 distinct pairs each, all answered by the
    # rational teacher (a pair drawn twice in a round is asked once).
    assert 28 <= summary.queries <= 32 and summary.labels == summary.queries
    assert summary.label_accuracy == 1.0
    # Something was learned: the final reward model orders the run's own steps (labels cover
    # about 60 of the 1,000) as the env's reward does, well above chance (0.5).
    buffer = ReplayBuffer(1000, 3, 1, 48)
    CheckpointManager(run_dir / "checkpoints").load(buffer=buffer)
    learned, truth = buffer.learned_reward, buffer.env_reward
    i, j = np.random.default_rng(0).integers(0, len(truth), (2, 20_000))
    differ = truth[i] != truth[j]
    assert np.mean(np.sign(learned[i] - learned[j])[differ] == np.sign(truth[i] - truth[j])[differ]) >= 0.6
    for name in ("config.json", "metrics.csv", "eval.jsonl", "summary.json", "reward_model.pt", "preferences.npz"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.*"))
    videos = [p.name for p in sorted((run_dir / "videos").glob("*.gif"))]
    assert videos == ["eval_00000400.gif", "eval_00000800.gif", "eval_00001000.gif"]
    assert (tmp_path / "rm" / "tiny.pt").is_file()
    assert CheckpointManager(run_dir / "checkpoints").latest() == "step_000001000"
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train/episode_return", "eval/return_mean", "feedback/labels", "reward/train_acc", "sac/critic_loss"):
        assert column in header
    import csv

    with (run_dir / "metrics.csv").open() as handle:
        reused = sum(float(row["feedback/from_store"]) for row in csv.DictReader(handle) if row["feedback/from_store"])
    with QueryStore(tmp_path / "q") as store:
        assert store.stats().total + reused == summary.queries  # a pair asked twice is answered by the store
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [400, 800, 1000]
    assert all(len(e["returns"]) == 2 and len(set(e["returns"])) == 2 for e in evals)  # different starts


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    config = tiny_config(steps=800)
    straight = tmp_path / "straight"
    run_training(config, straight, store_dir=tmp_path / "q1", export_dir=None, progress=False)

    interrupted = tmp_path / "interrupted"
    partial = run_training(config, interrupted, store_dir=tmp_path / "q2", export_dir=None, progress=False, stop_after=700)
    assert not partial.extra["complete"] and partial.steps == 700
    with QueryStore(tmp_path / "q2") as store:
        asked_before = store.stats().total
    assert 0 < asked_before <= 24  # rounds at 400 and 600; the one at 800 not reached
    resumed = run_training(None, interrupted, resume=True, store_dir=tmp_path / "q2", export_dir=None, progress=False)
    assert resumed.extra["complete"] and resumed.steps == 800
    with QueryStore(tmp_path / "q1") as straight_store, QueryStore(tmp_path / "q2") as store:
        # The steps replayed after the checkpoint were answered from the store: nothing asked twice.
        assert store.stats().total == straight_store.stats().total
    assert_same_learning(interrupted, straight)  # as the run that was never interrupted


def assert_same_learning(run: Path, reference: Path) -> None:
    """Same counters and bit-identical learning: summaries, evaluations and every logged value,
    except wall-clock times and the count of answers read back from the store (a resumed run
    re-reads what it had asked before the interruption)."""
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    for key in ("steps", "episodes", "queries", "labels", "eval_return_mean"):
        assert summary[key] == expected[key], key
    assert _eval_returns(run) == _eval_returns(reference)
    rows, expected_rows = metric_rows(run), metric_rows(reference)
    assert list(rows[0]) == list(expected_rows[0]) and len(rows) == len(expected_rows) > 5
    varying = {c for c in expected_rows[0] if "seconds" in c or c.startswith("time/") or c == "feedback/from_store"}
    for row, expected_row in zip(rows, expected_rows):
        assert {k: v for k, v in row.items() if k not in varying} == {k: v for k, v in expected_row.items() if k not in varying}


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_env_reward_baseline_asks_no_queries(tmp_path: Path) -> None:
    summary = run_training(tiny_config(steps=400, reward="env"), tmp_path / "env", store_dir=tmp_path / "q",
                           export_dir=None, progress=False)
    assert summary.extra["complete"] and summary.queries == 0
    assert not (tmp_path / "q").exists()


def test_damaged_checkpoint_names_the_way_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_training(tiny_config(steps=600), run_dir, store_dir=tmp_path / "q", export_dir=None, progress=False, stop_after=500)
    manager = CheckpointManager(run_dir / "checkpoints")
    latest = manager.latest()
    (run_dir / "checkpoints" / latest / "state.pt").write_bytes(b"truncated")
    with pytest.raises(UserError, match=r"damaged.*--checkpoint step_000000200"):
        run_training(None, run_dir, resume=True, store_dir=tmp_path / "q", export_dir=None, progress=False)
    resumed = run_training(None, run_dir, resume=True, checkpoint="step_000000200", store_dir=tmp_path / "q",
                           export_dir=None, progress=False)
    assert resumed.extra["complete"]
    # The evaluation made after step 200 was cut from the log and made again, not repeated.
    steps = [json.loads(line)["step"] for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert steps == [400, 600]


def test_config_errors_are_user_errors() -> None:
    with pytest.raises(UnknownNameError, match="cartpole-swingup"):
        build_config("cartpole-swingdown")
    with pytest.raises(ConfigError, match="unknown config key 'sac.batchsize'"):
        build_config("pendulum", ["sac.batchsize=3"])
    config = build_config("pendulum", ["reward_model.input=state", "reward_model.state_kind=obs"])
    assert config.reward_model.state_dim == 3
    assert build_config("pendulum", ["reward_model.input=state"]).reward_model.state_dim == 4
    assert np.isclose(build_config("drawer-open").sac.actor_lr, 3e-4)


def test_budget_stops_feedback_but_not_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = build_config("pendulum", [*TINY, "labeler.max_queries=12"], steps=800)
    summary = run_training(config, tmp_path / "run", store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert summary.extra["complete"] and summary.steps == 800
    with QueryStore(tmp_path / "q") as store:
        asked = store.stats().total
    assert asked <= 12 + 8  # the batches in flight when the limit was hit are kept, never more
    assert summary.labels == asked  # every paid answer was used
    assert "budget" in caplog.text.lower()
