"""Learned rewards: the ensemble fit to preferences, its loss, data and query selection."""

from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import FitReport, RewardEnsemble, load_reward_model
from rlvlmf.reward.inputs import RewardInputs, state_features
from rlvlmf.reward.losses import bradley_terry_loss, preference_accuracy
from rlvlmf.reward.preferences import PreferenceBatch, PreferenceDataset

__all__ = [
    "FitReport",
    "PreferenceBatch",
    "PreferenceDataset",
    "RewardEnsemble",
    "RewardInputs",
    "RewardModelConfig",
    "bradley_terry_loss",
    "load_reward_model",
    "preference_accuracy",
    "state_features",
]
