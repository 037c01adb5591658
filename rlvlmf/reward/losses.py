"""Bradley-Terry preference loss and accuracy, as pure functions.

Label convention (RL-VLM-F): 0 = the first segment is better, 1 = the second, -1 = no
preference. Under Bradley-Terry, P(second preferred) = sigmoid(R_second - R_first) where R
is a segment's return (the sum of its per-step rewards; one step for single frames).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def preference_targets(labels: torch.Tensor) -> torch.Tensor:
    """Soft targets P(second better): 0 -> 0.0, 1 -> 1.0, -1 (no preference) -> 0.5.

    Args:
        labels: Integer labels in {0, 1, -1}, any shape.

    Returns:
        Float32 tensor of the same shape.
    """
    return torch.where(labels < 0, 0.5, labels.float())


def bradley_terry_loss(returns_first: torch.Tensor, returns_second: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the Bradley-Terry preference and the labels.

    Args:
        returns_first: ``(..., N)`` predicted returns of the first segments.
        returns_second: ``(..., N)`` predicted returns of the second segments.
        labels: ``(N,)`` or ``(..., N)`` labels in {0, 1, -1}; -1 is a 0.5 soft target.

    Returns:
        Scalar: the mean over the last axis, summed over any leading (ensemble) axes, so
        each member gets the gradient of its own mean loss.
    """
    logits = returns_second - returns_first
    targets = preference_targets(labels).expand_as(logits)
    per_pair = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return per_pair.mean(dim=-1).sum()


def correct_and_counted(
    returns_first: torch.Tensor, returns_second: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Number of correctly ordered pairs among those with a preference.

    Args:
        returns_first: ``(..., N)`` predicted returns of the first segments.
        returns_second: ``(..., N)`` predicted returns of the second segments.
        labels: ``(N,)`` labels in {0, 1, -1}; -1 pairs are not counted.

    Returns:
        ``(correct, counted)``: correct has the leading shape of the returns (one count per
        ensemble member), counted is the number of labelled pairs with a preference.
    """
    has_preference = labels >= 0
    predicted_second = (returns_second > returns_first).long()
    correct = ((predicted_second == labels) & has_preference).sum(dim=-1)
    return correct, int(has_preference.sum())


def preference_accuracy(returns_first: torch.Tensor, returns_second: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of pairs with a preference that the returns order correctly (NaN if none).

    Args:
        returns_first: ``(N,)`` predicted returns of the first segments.
        returns_second: ``(N,)`` predicted returns of the second segments.
        labels: ``(N,)`` labels in {0, 1, -1}.

    Returns:
        Accuracy in [0, 1], averaged over any leading axes.
    """
    correct, counted = correct_and_counted(returns_first, returns_second, labels)
    if counted == 0:
        return float("nan")
    return float(correct.float().mean()) / counted
