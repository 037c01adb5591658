"""Shared fixtures: a seeded rng, single-threaded torch, and no network for model hubs."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

# Tests never download anything: make every transformers / hub call fail fast if one tried.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# `rlvlmf train` (in-process or as a subprocess) exports reward models here, not into the
# checkout's reward_models/.
os.environ.setdefault("RLVLMF_REWARD_MODELS", tempfile.mkdtemp(prefix="rlvlmf-test-reward-models-"))


def pytest_configure(config: pytest.Config) -> None:
    import torch

    # Two OpenMP threads on two shared cores collapse under contention; small nets prefer one.
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test is reproducible."""
    return np.random.default_rng(0)
