"""Code as Reward: prompts, code extraction, verification and the regenerate loop.

A toy task with a documented 4-float observation (point x, y; target x, y). Successful
episodes move the point straight onto the target; random episodes wander with small steps
from at least 1.5 away, so they never come within 0.5 of it. A scripted chat backend plays
the VLM with canned replies: good, buggy, slow and hostile code.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.codegen.generate import CodegenConfig, generate_reward_code
from rlvlmf.codegen.prompts import (
    CodeExtractionError,
    extract_code,
    feedback_message,
    initial_messages,
    parse_program,
)
from rlvlmf.codegen.records import CodegenRecorder, load_program, new_session_id
from rlvlmf.codegen.reward import CodeReward
from rlvlmf.codegen.sandbox import SandboxLimits
from rlvlmf.codegen.verify import VerificationConfig, verify
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UnknownNameError
from rlvlmf.feedback.base import TransientBackendError
from rlvlmf.feedback.chat import ChatBackend, ChatMessage, ChatReply, ChatRequest

TASK = TaskDescription(
    name="point",
    goal="to move the point onto the target",
    positive_phrases=("the point on the target",),
    observation_doc="obs[0:2]: point position (x, y)\nobs[2:4]: target position (x, y)",
)
LIMITS = SandboxLimits(timeout_s=5.0, memory_mb=512)

GOOD = '''I split the task into approaching and reaching the target.

```python
import numpy as np

def subgoal_1(obs: np.ndarray) -> np.ndarray:
    """The point is within 0.5 of the target."""
    return np.linalg.norm(obs[:, 0:2] - obs[:, 2:4], axis=1) < 0.5

def goal(obs: np.ndarray) -> np.ndarray:
    """The point is on the target."""
    return np.linalg.norm(obs[:, 0:2] - obs[:, 2:4], axis=1) < 0.1
```
'''
FIRES_ALWAYS = GOOD.replace("< 0.1", "< 50.0")
NEVER_FIRES = GOOD.replace("< 0.1", "< -1.0")
RAISES = GOOD.replace("obs[:, 2:4], axis=1) < 0.1", "obs[:, 2:4], axis=1) < obs[:, 9]")
SLOW = GOOD.replace('"""The point is on the target."""', '"""The point is on the target."""\n    while True:\n        pass')
HOSTILE = GOOD.replace("import numpy as np", "import numpy as np\nimport os\nos.system('touch pwned')")
NO_CODE = "The goal is reached when the point sits on the target."


def episodes(rng: np.random.Generator, n: int = 8, steps: int = 30) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Successful (straight to the target) and random (small wandering steps) episodes."""
    success, random = [], []
    for _ in range(n):
        start = rng.uniform(-1, 1, 2)
        target = start + 1.5 * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
        path = start + np.linspace(0, 1, steps)[:, None] * (target - start)
        success.append(np.hstack([path, np.tile(target, (steps, 1))]))
        walk = start + np.cumsum(rng.uniform(-0.02, 0.02, (steps, 2)), axis=0)
        random.append(np.hstack([walk, np.tile(target, (steps, 1))]))
    return success, random


class ScriptedChat(ChatBackend):
    """Plays the VLM: returns canned replies in order and keeps every conversation it got."""

    family = "scripted-chat"

    def __init__(self, replies: Sequence[str | BaseException]) -> None:
        super().__init__("scripted-coder")
        self.replies = deque(replies)
        self.conversations: list[list[ChatMessage]] = []

    async def asend(self, request: ChatRequest) -> ChatReply:
        self.conversations.append(list(request.messages))
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return ChatReply(text=reply, input_tokens=120, output_tokens=80, meta={"model": "scripted-coder"})


# ----------------------------------------------------------------------------- prompts


def test_initial_messages_carry_task_fields_and_frames() -> None:
    start = np.zeros((8, 8, 3), np.uint8)
    goal = np.full((8, 8, 3), 255, np.uint8)
    system, user = initial_messages(TASK, obs_dim=4, frames=(start, goal))
    assert system.role == "system" and user.role == "user"
    images = [p for p in user.parts if isinstance(p, np.ndarray)]
    assert len(images) == 2 and images[0] is start and images[1] is goal
    text = "\n".join(p for p in user.parts if isinstance(p, str))
    for needle in ("to move the point onto the target", "obs[2:4]: target position", "(N, 4)", "subgoal_1", "goal"):
        assert needle in text
    _, text_only = initial_messages(TASK, obs_dim=4)
    assert all(isinstance(p, str) for p in text_only.parts)


def test_feedback_message_lists_failures_and_examples() -> None:
    message = feedback_message(["goal: fired on 0% of 8 successful episodes"], [("Last observation", np.array([0.12345, 1.0]))])
    (text,) = message.parts
    assert "- goal: fired on 0% of 8 successful episodes" in text
    assert "0.123" in text and "0.12345" not in text


def test_extract_code_prefers_longest_python_block() -> None:
    reply = "```\nplain = 1\n```\ntext\n```python\nx = 1\n```\n```py\nlonger = 2 + 3\n```"
    assert extract_code(reply) == "longer = 2 + 3\n"
    assert extract_code("```\nplain = 1\n```") == "plain = 1\n"
    with pytest.raises(CodeExtractionError, match="no fenced"):
        extract_code(NO_CODE)


def test_parse_program_orders_subgoals_numerically() -> None:
    code = (
        "def goal(o): pass\ndef subgoal_10_last(o): pass\ndef subgoal_2(o): pass\ndef helper(o): pass\ndef subgoal_1(o): pass\n"
    )
    program = parse_program(code)
    assert program.subgoals == ("subgoal_1", "subgoal_2", "subgoal_10_last")
    assert program.function_names[-1] == "goal"
    with pytest.raises(CodeExtractionError, match="no top-level function named 'goal'"):
        parse_program("def subgoal_1(o): pass\n")
    with pytest.raises(CodeExtractionError, match="syntax error"):
        parse_program("def goal(:\n")


# ----------------------------------------------------------------------------- verification


def test_verify_passes_good_code(rng: np.random.Generator) -> None:
    success, random = episodes(rng)
    report = verify(extract_code(GOOD), success, random, limits=LIMITS)
    assert report.passed, report.failures()
    by_name = {f.name: f for f in report.functions}
    assert list(by_name) == ["subgoal_1", "goal"]
    assert by_name["goal"].success_fire_rate == 1.0 and by_name["goal"].random_fire_rate == 0.0
    # The sub-goal is reached before the goal on successful episodes.
    assert by_name["subgoal_1"].first_fire < by_name["goal"].first_fire
    assert report.to_dict()["passed"] is True


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        (FIRES_ALWAYS, "goal: fired on 100% of 8 random episodes, at most 10% allowed"),
        (NEVER_FIRES, "goal: fired on 0% of 8 successful episodes, needs at least 90%"),
        (RAISES, "goal: rejected: raised IndexError"),
        (HOSTILE, "the code was rejected: forbidden import os"),
    ],
)
def test_verify_fails_bad_code_with_reason(rng: np.random.Generator, reply: str, failure: str, tmp_path: Path) -> None:
    success, random = episodes(rng)
    report = verify(extract_code(reply), success, random, limits=LIMITS)
    assert not report.passed
    assert any(line.startswith(failure) for line in report.failures()), report.failures()
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_verify_rejects_slow_code_by_timeout(rng: np.random.Generator) -> None:
    success, random = episodes(rng, n=2)
    report = verify(extract_code(SLOW), success, random, limits=SandboxLimits(timeout_s=0.5))
    assert report.failures() == ["goal: rejected: timeout after 0.5 s"]
    assert report.functions[0].passed  # subgoal_1 is fine


def test_verify_config_thresholds_are_configurable(rng: np.random.Generator) -> None:
    success, random = episodes(rng)
    lenient = VerificationConfig(max_random_fire_rate=1.0)
    assert verify(extract_code(FIRES_ALWAYS), success, random, lenient, LIMITS).passed
    with pytest.raises(ConfigError):
        VerificationConfig(min_success_fire_rate=1.5)
    with pytest.raises(ConfigError, match="successful episode"):
        verify(extract_code(GOOD), [], random)


# ----------------------------------------------------------------------------- generate loop


def test_regenerates_until_code_passes_and_records_every_attempt(rng: np.random.Generator, tmp_path: Path) -> None:
    success, random = episodes(rng)
    chat = ScriptedChat([NO_CODE, HOSTILE, FIRES_ALWAYS, GOOD])
    frames = (np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 200, np.uint8))
    recorder = CodegenRecorder(tmp_path, new_session_id(TASK.name))
    result = generate_reward_code(
        chat, TASK, success, random, frames=frames,
        config=CodegenConfig(max_attempts=4, limits=LIMITS), recorder=recorder,
    )  # fmt: skip
    assert result.passed and len(result.attempts) == 4
    assert [a.passed for a in result.attempts] == [False, False, False, True]
    assert "no fenced" in result.attempts[0].error
    assert result.attempts[1].report.load_error == "forbidden import os"
    assert result.program.function_names == ("subgoal_1", "goal")

    # Each failure went back to the model in the next request, after its own reply.
    assert len(chat.conversations) == 4
    second = chat.conversations[1]
    assert second[-2].role == "assistant" and second[-2].parts == (NO_CODE,)
    assert "no fenced" in second[-1].parts[0]
    assert "forbidden import os" in chat.conversations[2][-1].parts[0]
    assert "random episodes" in chat.conversations[3][-1].parts[0]
    assert "Last observation of a successful episode" in chat.conversations[3][-1].parts[0]

    # Records: session, frames, one JSON per attempt, result, program.
    files = sorted(p.name for p in recorder.dir.iterdir())
    assert files == [
        "attempt-01.json", "attempt-02.json", "attempt-03.json", "attempt-04.json",
        "goal.png", "program.py", "result.json", "session.json", "start.png",
    ]  # fmt: skip
    first = json.loads((recorder.dir / "attempt-01.json").read_text())
    assert first["reply"] == NO_CODE and first["passed"] is False
    image_parts = [p["image"] for m in first["messages"] for p in m["parts"] if isinstance(p, dict)]
    assert [p["file"] for p in image_parts] == ["start.png", "goal.png"]
    third = json.loads((recorder.dir / "attempt-03.json").read_text())
    assert third["verification"]["passed"] is False and third["code"] == extract_code(FIRES_ALWAYS)
    session = json.loads((recorder.dir / "session.json").read_text())
    assert session["backend"]["model"] == "scripted-coder" and session["task"]["name"] == "point"

    program = load_program(recorder.session_id, root=tmp_path)
    assert program == result.program


def test_gives_up_after_max_attempts(rng: np.random.Generator, tmp_path: Path) -> None:
    success, random = episodes(rng, n=3)
    chat = ScriptedChat([RAISES, NEVER_FIRES, GOOD])
    recorder = CodegenRecorder(tmp_path, "s1")
    config = CodegenConfig(max_attempts=2, limits=LIMITS)
    result = generate_reward_code(chat, TASK, success, random, config=config, recorder=recorder)
    assert not result.passed and len(result.attempts) == 2 and len(chat.replies) == 1
    record = json.loads((recorder.dir / "result.json").read_text())
    assert record["passed"] is False and "successful episodes" in record["last_failures"][0]
    with pytest.raises(ConfigError, match="did not pass"):
        load_program("s1", root=tmp_path)
    with pytest.raises(UnknownNameError, match="recent sessions: s1"):
        load_program("s2", root=tmp_path)


def test_transient_errors_are_retried(rng: np.random.Generator) -> None:
    success, random = episodes(rng, n=3)
    chat = ScriptedChat([TransientBackendError("HTTP 503", status=503, retry_after=0.0), GOOD])
    result = generate_reward_code(chat, TASK, success, random, config=CodegenConfig(limits=LIMITS))
    assert result.passed and len(result.attempts) == 1 and len(chat.conversations) == 2


# ----------------------------------------------------------------------------- training reward


def test_code_reward_is_fraction_of_checkers_satisfied() -> None:
    program = parse_program(extract_code(GOOD))
    obs = np.array([[0.0, 0.0, 0.0, 0.0], [0.3, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    with CodeReward(program, LIMITS) as reward:
        np.testing.assert_array_equal(reward(obs), np.array([1.0, 0.5, 0.0], dtype=np.float32))
        assert set(reward.components(obs)) == {"subgoal_1", "goal"}


# ----------------------------------------------------------------------------- CLI, over HTTP

PENDULUM_BUGGY = """```python
import numpy as np

def subgoal_1(obs):
    \"\"\"The pendulum is above horizontal.\"\"\"
    return obs[:, 0] > 0.0

def goal(obs):
    \"\"\"Upright (always, by mistake).\"\"\"
    return obs[:, 0] > -2.0
```"""
PENDULUM_GOOD = PENDULUM_BUGGY.replace("obs[:, 0] > -2.0", "(obs[:, 0] > 0.95) & (np.abs(obs[:, 2]) < 0.5)")


def pendulum_swing_ups(n: int = 5, steps: int = 40) -> np.ndarray:
    """(n, steps, 3) observations of a pendulum swung from hanging to upright and stopped."""
    theta = np.linspace(np.pi, 0.0, steps) ** 2 / np.pi  # slows down near the top
    speed = np.gradient(theta) * 20.0
    one = np.stack([np.cos(theta), np.sin(theta), speed], axis=1)
    return np.repeat(one[None], n, axis=0)


def test_cli_codegen_against_local_openai_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlvlmf.cli import main
    from rlvlmf.testing.openai_server import FakeOpenAIServer, FakeResponse

    success = tmp_path / "swing_ups.npz"
    np.savez(success, episodes=pendulum_swing_ups())
    out = tmp_path / "program.json"
    with FakeOpenAIServer() as server:
        server.push(
            FakeResponse.reply(PENDULUM_BUGGY, completion_tokens=90), FakeResponse.reply(PENDULUM_GOOD, completion_tokens=95)
        )
        code = main([
            "codegen", "--preset", "pendulum", "--backend", f"openai:fake-coder@{server.url}",
            "--success-trajs", str(success), "--random-episodes", "10", "--episode-steps", "50",
            "--max-random-fire", "0.6", "--max-random-fire-subgoal", "1.0",
            "--store", str(tmp_path / "store"), "--out", str(out), "--timeout-s", "5",
        ])  # fmt: skip
        requests = server.chat_requests()
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "attempt 1: failed: goal: fired on 100% of 10 random episodes" in printed
    assert "attempt 2: passed" in printed
    assert len(requests) == 2
    assert "angular velocity" in requests[0].text()  # the preset's observation fields
    assert "fired on 100% of 10 random episodes" in requests[1].text()
    program = load_program(out)
    assert program.function_names == ("subgoal_1", "goal")
    (session,) = (tmp_path / "store" / "codegen").iterdir()
    assert load_program(session.name, root=tmp_path / "store") == program
    assert json.loads((session / "attempt-02.json").read_text())["verification"]["passed"] is True


def test_cli_codegen_refuses_non_chat_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlvlmf.cli import main

    code = main(["codegen", "--preset", "pendulum", "--backend", "scripted", "--store", str(tmp_path)])
    assert code == 2
    assert "not a chat model" in capsys.readouterr().err
