"""rlvlmf: reinforcement learning from vision-language-model feedback."""

__version__ = "0.1.0"
