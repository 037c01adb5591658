"""``rlvlmf queries ask|stats`` end to end, against the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.cli import main
from rlvlmf.errors import ConfigError
from rlvlmf.feedback.images import encode_png
from rlvlmf.testing.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
GOAL = "to open the drawer"


def write_pngs(directory: Path, rng: np.random.Generator, n: int) -> list[str]:
    paths = []
    for index in range(n):
        path = directory / f"frame{index}.png"
        path.write_bytes(encode_png(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)))
        paths.append(str(path))
    return paths


def ask(server: FakeOpenAIServer, store: Path, images: list[str], *extra: str) -> list[str]:
    """Command line of ``queries ask`` against the fake server."""
    argv = [
        "queries", "ask", "--backend", f"openai:fake-vlm@{server.url}", "--goal", GOAL, "--store", str(store), *extra, *images,
    ]
    return argv


def test_ask_then_warm_ask_then_stats(tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]) -> None:
    images = write_pngs(tmp_path, rng, 4)
    store = tmp_path / "queries"
    with FakeOpenAIServer() as server:
        assert main(ask(server, store, images, "--run", "try")) == 0
        cold = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        calls = server.count
        assert calls == 4  # two pairs, two stages each
        assert main(ask(server, store, images)) == 0
        warm = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert server.count == calls  # zero calls on a warm store
        assert main(ask(server, store, images, "--offline")) == 0
        capsys.readouterr()
    assert [r["label"] for r in cold] == [1, 1]  # the fake server's default answer
    assert [(r["first"], r["second"]) for r in cold] == [(images[0], images[1]), (images[2], images[3])]
    assert not any(r["from_store"] for r in cold) and all(r["from_store"] for r in warm)
    assert all(len(r["stages"]) == 2 and r["abstain_reason"] is None for r in cold)
    assert [r["key"] for r in warm] == [r["key"] for r in cold]

    assert main(["queries", "stats", "--store", str(store), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["total"], stats["ok"], stats["failed"], stats["labels"]) == (2, 2, 0, {"1": 2})
    assert stats["input_tokens"] == sum(r["input_tokens"] for r in cold) > 0
    assert stats["agreement"] is None  # PNG files carry no reward
    assert main(["queries", "stats", "--store", str(store), "--run", "try"]) == 0
    text = capsys.readouterr().out
    assert "queries    2 (ok 2, failed 0)" in text and "p99" in text


def test_offline_miss_fails_with_exit_1(tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]) -> None:
    images = write_pngs(tmp_path, rng, 2)
    with FakeOpenAIServer() as server:
        assert main(ask(server, tmp_path / "q", images, "--offline")) == 1
        assert server.count == 0
    [result] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["failed"] and result["label"] == -1 and result["error"].startswith("offline")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["queries", "ask", "--backend", "scripted", "--goal", GOAL, "a.png"], "in pairs"),
        (["queries", "ask", "--backend", "scripted", "--goal", GOAL, "missing1.png", "missing2.png"], "does not exist"),
        (["queries", "ask", "--backend", "nosuch", "--goal", GOAL, "{img}", "{img}"], "unknown backend family 'nosuch'"),
        (["queries", "ask", "--backend", "scripted", "--goal", GOAL, "-o", "beta", "{img}", "{img}"], "KEY=VALUE"),
        (["queries", "stats", "--store", "{tmp}/nowhere"], "no query store"),
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path,
    rng: np.random.Generator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    [image] = write_pngs(tmp_path, rng, 1)
    argv = [a.format(img=image, tmp=tmp_path) for a in argv]
    monkeypatch.chdir(tmp_path)  # the default store lands in tmp_path
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_subprocess_smoke(tmp_path: Path, rng: np.random.Generator) -> None:
    images = write_pngs(tmp_path, rng, 2)
    with FakeOpenAIServer() as server:
        done = subprocess.run(
            [sys.executable, "-m", "rlvlmf", *ask(server, tmp_path / "q", images, "--both-orders")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert server.count == 4  # both orders, two stages each
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    # The fake always says "Image 2": swapped, that contradicts itself -> position flip.
    assert result["label"] == -1 and result["abstain_reason"] == "position flip"
    help_text = subprocess.run([sys.executable, "-m", "rlvlmf", "queries", "--help"], cwd=REPO, capture_output=True, text=True)
    assert "ask" in help_text.stdout and "stats" in help_text.stdout


def test_backend_options_are_parsed_by_the_one_parse_options() -> None:
    from rlvlmf.cli import codegen, queries
    from rlvlmf.config import parse_options

    assert queries.parse_options is parse_options and codegen.parse_options is parse_options
    assert parse_options(None) == {}
    assert parse_options(["beta=1", " mode =one-stage", "flag=true", "url=http://x:1/v1"]) == {
        "beta": 1, "mode": "one-stage", "flag": True, "url": "http://x:1/v1"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(["beta"])
