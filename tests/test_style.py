"""The style the code follows, enforced: ruff and mypy, configured in pyproject.toml.

Both run from the test venv as subprocesses so the README's one test command checks them; a
failure prints the tools' own output (file:line: code message), which is what to fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=540)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "rlvlmf", "tests", "benchmarks")
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}{result.stderr}"


def test_mypy_is_clean() -> None:
    # The files and options come from [tool.mypy]; its cache (.mypy_cache, git-ignored) keeps re-runs fast.
    result = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"))
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"
