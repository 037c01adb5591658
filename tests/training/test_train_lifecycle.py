"""A run's life around the loop: checks before the folder exists, clean stops, timed checkpoints, one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvlmf.cli import main
from rlvlmf.errors import UserError
from rlvlmf.training.buffer import ReplayBuffer
from rlvlmf.training.builder import build_config
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.loop import Trainer, run_training
from rlvlmf.training.run_files import RunFiles

TINY = [
    "seed_steps=200", "unsup_steps=200", "num_interact=200", "reward_batch=8", "max_feedback=32",
    "eval_every=400", "eval_episodes=2", "checkpoint_every=200", "query_pool_size=32",
    "sac.hidden_sizes=32,32", "sac.batch_size=32", "reward_model.max_epochs=3", "reward_model.frame_size=48",
    "reward_model.conv_channels=4,4,4,4", "labeler.progress=false",
]
"""The tiny pendulum schedule of test_train.py (episodes of 200 steps)."""


HOLD_LOCK = ("import sys, time; from rlvlmf.utils.lock import ProcessLock; "
             "ProcessLock(sys.argv[1], 'x').acquire(); print('held', flush=True); time.sleep(120)")
"""A process that holds a lock until killed."""


def tiny_config(steps: int, *overrides: str, **fields):
    return build_config("pendulum", [*TINY, *overrides], steps=steps, **fields)


def _train(argv: list[str], tmp_path: Path) -> int:
    return main(["train", "--preset", "pendulum", "--out", str(tmp_path / "runs"), "--name", "run",
                 "--store", str(tmp_path / "q"), "--export-dir", str(tmp_path / "rm"), "--no-progress", *argv])


# ---------------------------------------------------------------------- checks before the folder exists
@pytest.mark.parametrize(("argv", "message"), [
    (["--backend-opt", "eps_mistake=abc"], "eps_mistake: expected a number, got 'abc'"),
    (["--backend-opt", "eps_mistak=0.1"], "unknown scripted teacher option"),
    (["--backend", "nosuch:model"], "unknown backend family 'nosuch'"),
    (["--reward", "clip"], "--reward clip needs --backend clip:"),
    (["--backend", "hf:/no/such/model"], "cannot load the processor of '/no/such/model'"),
    (["--backend", "openai:gpt-4o"], "OPENAI_API_KEY"),
    (["--reward", "code:/no/such/reward.py"], "reward code file '/no/such/reward.py' not found"),
    (["--reward", "code:{tmp}/broken.py"], "broken.py: syntax error: '(' was never closed (line 1)"),
])
def test_a_failed_start_leaves_no_run_folder(argv: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "broken.py").write_text("def goal(obs:\n")
    assert _train([a.format(tmp=tmp_path) for a in argv], tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert not (tmp_path / "runs" / "run").exists() and not (tmp_path / "q").exists()


def test_a_folder_whose_start_never_got_going_is_replaced_by_the_same_command(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")  # what an older, failed start left
    (run_dir / "tensorboard").mkdir()
    summary = run_training(tiny_config(400), run_dir, store_dir=tmp_path / "q", export_dir=None, progress=False,
                           stop_after=250)
    assert summary.steps == 250 and json.loads((run_dir / "config.json").read_text())["steps"] == 400
    # Now it has metrics and a checkpoint: a fresh start is refused, --resume is the way on.
    with pytest.raises(UserError, match="already holds an unfinished run; continue it with `rlvlmf train --resume"):
        run_training(tiny_config(400), run_dir, store_dir=tmp_path / "q", export_dir=None, progress=False)


# ---------------------------------------------------------------------- stopping safely
def _checkpoint_state(run_dir: Path, config) -> tuple[ReplayBuffer, dict]:
    """The replay buffer and agent weights of the run's latest checkpoint (pendulum: 3-dim obs, 1-dim action)."""
    buffer = ReplayBuffer(config.steps, 3, 1, config.reward_model.frame_size)
    loaded = CheckpointManager(RunFiles(run_dir).checkpoints).load(buffer=buffer)
    return buffer, loaded.torch_state["agent"]


def test_a_signal_mid_episode_checkpoints_that_step_and_the_resume_is_bit_exact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(800)
    straight = tmp_path / "straight"
    run_training(config, straight, store_dir=tmp_path / "q1", export_dir=None, progress=False)

    update = Trainer._sac_update

    def update_then_signal(self: Trainer) -> None:
        update(self)
        if self.counters.step == 650:  # 50 steps into the fourth 200-step episode
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_sac_update", update_then_signal)
    handler = signal.getsignal(signal.SIGTERM)
    stopped = tmp_path / "stopped"
    partial = run_training(config, stopped, store_dir=tmp_path / "q2", export_dir=None, progress=False)
    assert partial.steps == 650 and partial.extra == {"complete": False, "stopped_by": "SIGTERM"}
    assert signal.getsignal(signal.SIGTERM) is handler  # the run's handler is gone after it
    meta = CheckpointManager(RunFiles(stopped).checkpoints).load().meta
    assert meta["step"] == 650 and meta["open_episode"]["seed"] is not None
    monkeypatch.undo()

    resumed = run_training(None, stopped, resume=True, store_dir=tmp_path / "q2", export_dir=None, progress=False)
    assert resumed.extra["complete"] and resumed.steps == 800 and resumed.episodes == 4
    buffer, agent = _checkpoint_state(stopped, config)
    buffer_straight, agent_straight = _checkpoint_state(straight, config)
    assert buffer.total_added == buffer_straight.total_added == 800
    for name in ("obs", "next_obs", "action", "env_reward", "learned_reward", "frames"):
        np.testing.assert_array_equal(getattr(buffer, name), getattr(buffer_straight, name), err_msg=name)
    for key, value in agent_straight["actor"].items():
        assert torch.equal(agent["actor"][key], value), key
    evals = [json.loads(line)["returns"] for line in RunFiles(stopped).evals.read_text().splitlines()]
    assert evals == [json.loads(line)["returns"] for line in RunFiles(straight).evals.read_text().splitlines()]


def test_the_wall_clock_timer_checkpoints_mid_episode(tmp_path: Path) -> None:
    # No step-count checkpoints; one every 0.12 s of wall clock instead.
    config = tiny_config(600, "checkpoint_every=100000", "checkpoint_minutes=0.002")
    run_dir = tmp_path / "run"
    run_training(config, run_dir, store_dir=tmp_path / "q", export_dir=None, progress=False, stop_after=450)
    manager = CheckpointManager(RunFiles(run_dir).checkpoints)
    steps = [int(name.split("_")[1]) for name in manager.list()]
    assert steps and any(step % 200 for step in steps), steps  # taken between episode ends
    resumed = run_training(None, run_dir, resume=True, store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert resumed.extra["complete"] and resumed.episodes == 3


# ---------------------------------------------------------------------- one process per run folder
def test_a_second_process_on_a_run_folder_is_refused_naming_the_first(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "runs" / "run"
    run_training(tiny_config(400), run_dir, store_dir=tmp_path / "q", export_dir=None, progress=False, stop_after=210)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(RunFiles(run_dir).lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["train", "--resume", str(run_dir), "--store", str(tmp_path / "q"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert RunFiles(run_dir).lock.read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing anything: the kernel dropped its lock.
    resumed = run_training(None, run_dir, resume=True, store_dir=tmp_path / "q", export_dir=None, progress=False)
    assert resumed.extra["complete"]
