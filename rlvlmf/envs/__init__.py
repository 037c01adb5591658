"""Environments: one registry, headless rendering, and each task's goal text."""

from rlvlmf.envs.task import TaskDescription

__all__ = ["TaskDescription"]
