"""Bradley-Terry loss and accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from rlvlmf.reward.losses import bradley_terry_loss, correct_and_counted, preference_accuracy, preference_targets


def test_targets_map_labels() -> None:
    assert preference_targets(torch.tensor([0, 1, -1])).tolist() == [0.0, 1.0, 0.5]


def test_loss_matches_the_formula() -> None:
    first = torch.tensor([0.0, 1.0, 0.3])
    second = torch.tensor([2.0, 0.0, 0.3])
    labels = torch.tensor([1, 0, -1])
    p = torch.sigmoid(second - first)  # P(second better)
    expected = -(torch.log(p[0]) + torch.log(1 - p[1]) + 0.5 * torch.log(p[2]) + 0.5 * torch.log(1 - p[2])) / 3
    assert bradley_terry_loss(first, second, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_preference_is_minimised_at_equal_returns() -> None:
    gap = torch.linspace(-3, 3, 61, requires_grad=True)
    losses = torch.stack([bradley_terry_loss(torch.zeros(1), g.view(1), torch.tensor([-1])) for g in gap])
    assert gap[losses.argmin()].item() == pytest.approx(0.0, abs=1e-6)
    assert losses.min().item() == pytest.approx(math.log(2), rel=1e-6)


def test_ensemble_axis_sums_member_means() -> None:
    first = torch.randn(3, 8)
    second = torch.randn(3, 8)
    labels = torch.randint(0, 2, (8,))
    total = bradley_terry_loss(first, second, labels)
    per_member = sum(bradley_terry_loss(first[e], second[e], labels) for e in range(3))
    assert total.item() == pytest.approx(per_member.item(), rel=1e-6)


def test_accuracy_ignores_no_preference() -> None:
    first = torch.tensor([0.0, 1.0, 0.0, 5.0])
    second = torch.tensor([1.0, 0.0, 1.0, 0.0])
    labels = torch.tensor([1, 1, -1, 0])
    assert preference_accuracy(first, second, labels) == pytest.approx(2 / 3)
    correct, counted = correct_and_counted(first.expand(2, 4), second.expand(2, 4), labels)
    assert correct.tolist() == [2, 2] and counted == 3
    assert math.isnan(preference_accuracy(first, second, torch.full((4,), -1)))
