"""Fixtures shared by the env tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import pytest

from rlvlmf.envs import make_env


@pytest.fixture
def build() -> Iterator[Callable[..., gym.Env]]:
    """``make_env`` that closes every env it made (EGL complains at exit otherwise)."""
    made: list[gym.Env] = []

    def _build(spec: str, **options: Any) -> gym.Env:
        env = make_env(spec, **options)
        made.append(env)
        return env

    yield _build
    for env in made:
        env.close()
