"""A backend from another package, through the ``rlvlmf.backends`` entry points, end to end.

The plug-in is a throwaway distribution (a module plus a ``.dist-info`` with
``entry_points.txt``) in a temp folder on ``PYTHONPATH``; each command runs in a subprocess,
as a user's would, so entry points are discovered from scratch. No network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.feedback.images import encode_png
from rlvlmf.feedback.store import QueryStore

PLUGIN = '''
"""A third-party backend: prefers the brighter frame. Imports only rlvlmf's top level."""
from rlvlmf import Answer, Backend, FramePair, Label


class BrightnessBackend(Backend):
    """Prefers the brighter frame (plug-in test backend)."""

    family = "brightness"
    description = "prefers the brighter frame"

    def __init__(self, margin: float = 0.0) -> None:
        self.margin = margin

    @classmethod
    def from_spec(cls, model, base_url, **options):
        return cls(float(options.get("margin", 0.0)))

    def identity(self):
        return {"family": "brightness", "version": 1, "margin": self.margin}

    def label(self, pairs: list[FramePair], task):
        answers = []
        for pair in pairs:
            diff = float(pair.first.mean()) - float(pair.second.mean())
            label = Label.NONE if abs(diff) <= self.margin else (Label.FIRST if diff > 0 else Label.SECOND)
            answers.append(Answer(label, stages=(f"brightness difference {diff:.1f}",)))
        return answers
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    (site / "brightness_plugin.py").write_text(PLUGIN)
    info = site / "brightness_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brightness-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rlvlmf.backends]\nbrightness = brightness_plugin:BrightnessBackend\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def _rlvlmf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rlvlmf", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_listed_and_asked(plugin_env: dict[str, str], tmp_path: Path) -> None:
    listing = _rlvlmf(plugin_env, "backends", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["family"]: row for row in map(json.loads, listing.stdout.splitlines())}
    assert rows["brightness"]["installed"] and rows["brightness"]["description"] == "prefers the brighter frame"
    assert rows["brightness"]["target"] == "brightness_plugin:BrightnessBackend"

    dark, light = tmp_path / "dark.png", tmp_path / "light.png"
    dark.write_bytes(encode_png(np.full((16, 16, 3), 20, np.uint8)))
    light.write_bytes(encode_png(np.full((16, 16, 3), 200, np.uint8)))
    asked = _rlvlmf(plugin_env, "queries", "ask", "--backend", "brightness", "--goal", "to light the room",
                    "--store", str(tmp_path / "q"), str(dark), str(light), str(light), str(dark))
    assert asked.returncode == 0, asked.stderr
    answers = [json.loads(line) for line in asked.stdout.splitlines()]
    assert [a["label"] for a in answers] == [1, 0]
    assert answers[0]["stages"] == ["brightness difference -180.0"]


def test_trains_with_it(plugin_env: dict[str, str], tmp_path: Path) -> None:
    from rlvlmf.testing import point_env

    done = _rlvlmf(plugin_env, "train", "--env", point_env.SPEC, "--goal", point_env.GOAL, "--backend", "brightness",
                   "--backend-opt", "margin=0.5", "--steps", "200", "--out", str(tmp_path / "runs"), "--name", "plug",
                   "--store", str(tmp_path / "q"), "--export-dir", str(tmp_path / "rm"), "--no-progress",
                   "--set", *point_env.TINY_SCHEDULE)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "plug" / "summary.json").read_text())
    assert summary["queries"] > 0
    with QueryStore(tmp_path / "q") as store:
        stats = store.stats(run_id="plug")
    assert stats.by_backend == {"brightness": stats.total} and stats.total > 0  # every answer was the plug-in's
