"""``rlvlmf train`` as a user runs it: a real process, a real Ctrl-C, the log it writes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlvlmf.testing.crash_harness import TINY
from rlvlmf.training.checkpoint import CheckpointManager
from rlvlmf.training.run_files import RunFiles


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text():
        assert proc.poll() is None, f"exited {proc.returncode} before {text!r}:\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s} s"
        time.sleep(0.2)


def test_ctrl_c_checkpoints_the_step_and_says_how_to_continue(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "run"
    base = [sys.executable, "-m", "rlvlmf", "train", "--store", str(tmp_path / "q"), "--export-dir", str(tmp_path / "rm"),
            "--no-progress"]
    fresh = [*base, "--preset", "pendulum", "--steps", "20000", "--out", str(tmp_path / "runs"), "--name", "run"]
    for override in TINY:
        fresh += ["--set", override]
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(fresh, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        try:
            # Without a progress bar the log still says what happens: a line per feedback round.
            _wait_for(err, "feedback round 1 at step 400", proc)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 130
        finally:
            proc.kill()
            proc.wait()
    log = err.read_text()
    assert re.search(r"feedback round 1 at step 400: \d+ queries, \d+ labels \(\d+ so far\), 0 abstains, 0 failed, "
                     r"label accuracy 1\.00; reward fit loss [\d.]+, accuracy [\d.]+; [\d.]+ s; \$0\.00 spent", log), log
    assert "evaluation at step 400: return" in log
    assert "\x1b[" not in log and "\r" not in log, "a log file gets no bars or escape codes"
    found = re.search(r"stopped at step (\d+); continue with: rlvlmf train --resume (\S+)", out.read_text())
    assert found, out.read_text()
    step = int(found[1])
    assert step >= 400 and Path(found[2]) == run_dir
    assert CheckpointManager(RunFiles(run_dir).checkpoints).latest() == f"step_{step:09d}"

    # The printed command continues from that very step.
    resumed = subprocess.run([*base, "--resume", str(run_dir), "--stop-after", str(step + 20)], capture_output=True,
                             text=True, timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed {run_dir} at step {step}" in resumed.stderr
    assert f"stopped at step {step + 20}; continue with: rlvlmf train --resume {run_dir}" in resumed.stdout
