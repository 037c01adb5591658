"""RL agents trained on learned or env rewards."""

from rlvlmf.agents.sac import DMC_PEBBLE, METAWORLD, SAC, SACConfig

__all__ = ["DMC_PEBBLE", "METAWORLD", "SAC", "SACConfig"]
