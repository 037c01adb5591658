"""The top-level command line: options anywhere, suggestions for typos, what `rlvlmf backends` tells."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rlvlmf.cli import build_parser, main


@pytest.mark.parametrize("argv", [["-v", "train"], ["train", "-v"], ["queries", "stats", "--verbose"]])
def test_verbose_goes_before_or_after_the_sub_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is True
    assert build_parser().parse_args(argv[:1] if argv[0] != "-v" else argv[1:]).verbose is False


def test_verbose_after_the_sub_command_turns_on_debug_logs(tmp_path: Path) -> None:
    main(["envs", "-v"])
    assert logging.getLogger("rlvlmf").level == logging.DEBUG
    main(["envs"])
    assert logging.getLogger("rlvlmf").level == logging.INFO


@pytest.mark.parametrize(("override", "suggestion"), [
    ("batch_size=64", "did you mean sac.batch_size or reward_model.batch_size"),
    ("num_interactt=100", "did you mean num_interact?"),
    ("sac.batchsize=64", "did you mean sac.batch_size"),
])
def test_an_unknown_set_key_gets_a_did_you_mean(override: str, suggestion: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "pendulum", "--out", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert suggestion in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_backends_says_whether_each_key_is_set_and_never_shows_it(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-print-me")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["backends"]) == 0
    table = capsys.readouterr().out
    assert "OPENAI_API_KEY (set)" in table and "ANTHROPIC_API_KEY (not set)" in table
    assert main(["backends", "--json"]) == 0
    rows = {row["family"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["openai"]["key_set"] == {"OPENAI_API_KEY": True}
    assert rows["anthropic"]["key_set"] == {"ANTHROPIC_API_KEY": False}
    assert "sk-do-not-print-me" not in table + json.dumps(rows)
