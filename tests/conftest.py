"""Shared fixtures: a seeded rng, single-threaded torch, and no network for model hubs."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests never download anything: make every transformers / hub call fail fast if one tried.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    # Two OpenMP threads on two shared cores collapse under contention; small nets prefer one.
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test is reproducible."""
    return np.random.default_rng(0)
