"""Small helpers shared across rlvlmf."""
