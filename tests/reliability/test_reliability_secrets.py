"""API keys reach the provider and nothing else: no file a run writes, no log line.

Three short ``rlvlmf train`` runs (openai, gemini, anthropic backends against their fake
servers) run with every key variable set to a sentinel. Each server also answers some
requests with an error that echoes the key back, as real providers do, so the key passes
through error messages, retries and failed store rows too. One run logs at debug level.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlvlmf.testing import anthropic_server, gemini_server
from rlvlmf.testing.crash_harness import ROOT, TINY
from rlvlmf.testing.json_server import ScriptedJSONServer
from rlvlmf.testing.openai_server import FakeOpenAIServer, FakeResponse

SENTINEL = "rlvlmf-sentinel-c0ffee-7f3a9c1d"
KEY_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY")
SHORT = [*TINY, "seed_steps=50", "unsup_steps=50", "reward_batch=6"]  # one feedback round, at step 100
AUTH_HEADER = {"openai": "authorization", "gemini": "x-goog-api-key", "anthropic": "x-api-key"}


def _servers() -> dict[str, FakeOpenAIServer | ScriptedJSONServer]:
    openai = FakeOpenAIServer()
    gemini = gemini_server.fake_gemini_server()
    anthropic = anthropic_server.fake_anthropic_server()
    echo = f"Incorrect API key provided: {SENTINEL}. You can find your API key at https://example.invalid"
    # A retried 429 and a 401 (that pair fails for good and is stored as failed), both echoing the key.
    openai.push(FakeResponse.error(429, echo, retry_after="0"), FakeResponse.error(401, echo))
    gemini.push(gemini_server.error(429, echo, retry_after="0"), gemini_server.error(403, echo))
    anthropic.push(anthropic_server.error(429, echo, retry_after="0"), anthropic_server.error(401, echo))
    return {"openai": openai, "gemini": gemini, "anthropic": anthropic}


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


def test_api_keys_never_leave_the_auth_header(tmp_path: Path) -> None:
    env = {**os.environ, **dict.fromkeys(KEY_VARS, SENTINEL), "PYTHONPATH": str(ROOT),
           "RLVLMF_REWARD_MODELS": str(tmp_path / "reward_models")}  # the default folder, in the run's cwd
    servers = _servers()
    for server in servers.values():
        server.start()
    try:
        procs = {}
        for family, server in servers.items():
            verbose = ["-v"] if family == "openai" else []
            cmd = [sys.executable, "-m", "rlvlmf", *verbose, "train", "--preset", "pendulum", "--backend",
                   f"{family}:fake-model@{server.url}", "--backend-opt", "timeout_s=20", "--steps", "200",
                   "--name", family, "--no-progress", "--set", "labeler.backoff_base_s=0.01"]
            for override in SHORT:
                cmd += ["--set", override]
            procs[family] = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        outputs = {family: proc.communicate(timeout=300) for family, proc in procs.items()}
    finally:
        for server in servers.values():
            server.close()

    for family, (stdout, stderr) in outputs.items():
        assert procs[family].returncode == 0, stderr.decode()[-3000:]
        assert SENTINEL.encode() not in stdout and SENTINEL.encode() not in stderr, family
        headers = [r.headers.get(AUTH_HEADER[family], "") for r in servers[family].requests]
        assert headers and all(SENTINEL in h for h in headers), family  # the key did reach the provider
    # The debug run logged the retried error, with the echoed key redacted.
    assert b"transient backend error" in outputs["openai"][1] and b"[redacted]" in outputs["openai"][1]

    for folder in ("runs", "queries", "reward_models"):
        assert (tmp_path / folder).is_dir(), folder
    assert _files_holding(tmp_path, SENTINEL.encode()) == []
    # The echoed errors did reach the store, redacted.
    import sqlite3

    with sqlite3.connect(tmp_path / "queries" / "queries.sqlite") as conn:
        errors = [row[0] for row in conn.execute("SELECT error FROM queries WHERE status = 'failed'")]
    assert len(errors) == 3 and all("[redacted]" in e for e in errors), errors


@pytest.mark.parametrize("family", ["openai", "gemini", "anthropic"])
def test_backend_identity_and_repr_hold_no_key(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlvlmf.feedback.registry import make_backend

    for var in KEY_VARS:
        monkeypatch.setenv(var, SENTINEL)
    backend = make_backend(f"{family}:fake-model@http://127.0.0.1:9/v1")
    assert SENTINEL not in repr(backend.identity()) and SENTINEL not in repr(backend)
