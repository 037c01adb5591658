"""The README's Python blocks run as written, in order, in one namespace (as a reader pastes them)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_python_blocks_are_found() -> None:
    assert python_blocks("a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n") == ["x = 1\n", "y = 2\n"]


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6, "the Python API section's blocks are missing"
    monkeypatch.chdir(tmp_path)  # the blocks write queries/, runs/ and reward_models/ here
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"README python block {number} failed: {type(exc).__name__}: {exc}\n{block}") from exc
    # What the blocks say they do, they did.
    from rlvlmf import Label

    assert namespace["result"].label == Label.SECOND  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "runs" / "point" / "summary.json").read_text())["steps"] == 300
    assert (tmp_path / "reward_models" / "point.pt").is_file()
    assert namespace["agent"].num_timesteps == 300  # type: ignore[attr-defined]
    assert math.isfinite(namespace["episode_return"])  # type: ignore[arg-type]
