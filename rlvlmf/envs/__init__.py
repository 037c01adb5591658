"""Environments: one registry, headless rendering, and each task's goal text.

``make_env(spec_or_preset, **options)`` builds any env; ``PRESETS`` holds the named set-ups.
Nothing here imports MuJoCo, dm_control or MetaWorld until an env is built.
"""

from rlvlmf.envs.custom import custom_preset
from rlvlmf.envs.frames import Crop
from rlvlmf.envs.presets import PRESETS, Preset, get_preset
from rlvlmf.envs.registry import FAMILIES, make_env
from rlvlmf.envs.task import TaskDescription

__all__ = ["FAMILIES", "PRESETS", "Crop", "Preset", "TaskDescription", "custom_preset", "get_preset", "make_env"]
