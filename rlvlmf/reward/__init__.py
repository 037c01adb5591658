"""Learned rewards: the ensemble fit to preferences, its loss, data and query selection.

``rlvlmf.training.knn_entropy`` (PEBBLE's exploration reward) is imported on its own: it
reads the replay buffer, which itself imports this package's input types.
"""

from rlvlmf.reward.config import RewardModelConfig
from rlvlmf.reward.ensemble import FitReport, RewardEnsemble, load_reward_model
from rlvlmf.reward.inputs import RewardInputs, state_features
from rlvlmf.reward.losses import bradley_terry_loss, preference_accuracy
from rlvlmf.reward.preferences import UNKNOWN_LABEL, PreferenceBatch, PreferenceDataset
from rlvlmf.reward.sampling import SAMPLING_METHODS, SegmentPairs, select_queries

__all__ = [
    "SAMPLING_METHODS",
    "UNKNOWN_LABEL",
    "FitReport",
    "PreferenceBatch",
    "PreferenceDataset",
    "RewardEnsemble",
    "RewardInputs",
    "RewardModelConfig",
    "SegmentPairs",
    "bradley_terry_loss",
    "load_reward_model",
    "preference_accuracy",
    "select_queries",
    "state_features",
]
