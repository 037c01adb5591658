"""Scripted B-Pref teacher: rational by default, and each noise parameter does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UnknownNameError
from rlvlmf.feedback.backends.scripted import SKIP_REASON, ScriptedTeacher, TeacherConfig, discounted_return
from rlvlmf.feedback.base import BackendError, FramePair, Label
from rlvlmf.feedback.labeler import Labeler, LabelerConfig
from rlvlmf.feedback.registry import make_backend

TASK = TaskDescription("drawer-open", "to open the drawer", ("an open drawer",))
FRAME = np.zeros((2, 2, 3), np.uint8)


def pair(first: np.ndarray | list[float], second: np.ndarray | list[float]) -> FramePair:
    return FramePair(FRAME, FRAME, np.asarray(first, float), np.asarray(second, float))


def segment_pairs(rng: np.random.Generator, n: int, length: int = 5) -> list[FramePair]:
    return [pair(rng.random(length), rng.random(length)) for _ in range(n)]


def true_labels(pairs: list[FramePair]) -> list[Label]:
    return [Label(int(p.second_rewards.sum() > p.first_rewards.sum())) for p in pairs]


def test_default_teacher_is_perfectly_rational(rng: np.random.Generator) -> None:
    pairs = segment_pairs(rng, 500)
    answers = ScriptedTeacher().label(pairs, TASK)
    assert [a.label for a in answers] == true_labels(pairs)
    assert {a.prob_second for a in answers} <= {0.0, 1.0}
    assert all(a.abstain_reason is None for a in answers)
    [tie] = ScriptedTeacher().label([pair([0.5, 0.5], [0.25, 0.75])], TASK)
    assert tie.label is Label.NONE and tie.prob_second == 0.5


def test_beta_follows_bradley_terry(rng: np.random.Generator) -> None:
    teacher = ScriptedTeacher(TeacherConfig(beta=2.0), seed=0)
    gap = 0.4
    answers = teacher.label([pair([0.3], [0.3 + gap])] * 5000, TASK)
    expected = 1 / (1 + np.exp(-2.0 * gap))
    assert answers[0].prob_second == pytest.approx(expected)
    frequency = np.mean([a.label is Label.SECOND for a in answers])
    assert frequency == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / 5000))
    # beta <= 0 means rational, as in B-Pref's "-1".
    assert ScriptedTeacher(TeacherConfig(beta=-1)).label([pair([0.3], [0.7])], TASK)[0].prob_second == 1.0


def test_gamma_makes_the_teacher_myopic() -> None:
    early, late = [1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0.8]
    assert ScriptedTeacher().label([pair(early, late)], TASK)[0].label is Label.FIRST
    assert ScriptedTeacher(TeacherConfig(gamma=0.5)).label([pair(early, late)], TASK)[0].label is Label.SECOND
    assert discounted_return(np.array(early), 0.5) == pytest.approx(0.5**4)
    assert discounted_return(np.array(late), 0.5) == pytest.approx(0.8)


def test_eps_mistake_flips_that_fraction(rng: np.random.Generator) -> None:
    pairs = segment_pairs(rng, 5000)
    answers = ScriptedTeacher(TeacherConfig(eps_mistake=0.2), seed=1).label(pairs, TASK)
    flipped = np.mean([a.label != t for a, t in zip(answers, true_labels(pairs))])
    assert flipped == pytest.approx(0.2, abs=4 * np.sqrt(0.2 * 0.8 / 5000))


def test_eps_skip_abstains_when_both_returns_are_low(rng: np.random.Generator) -> None:
    pairs = [pair([a], [b]) for a, b in rng.random((400, 2))]
    teacher = ScriptedTeacher(TeacherConfig(eps_skip=0.3, return_range=(0.0, 1.0)))
    answers = teacher.label(pairs, TASK)
    for p, a in zip(pairs, answers):
        low = max(p.first_rewards[0], p.second_rewards[0]) < 0.3
        assert (a.abstain_reason == SKIP_REASON) == low
        assert (a.label is Label.NONE) == low
    assert 0 < sum(a.abstain_reason == SKIP_REASON for a in answers) < 400


def test_eps_equal_ties_close_returns(rng: np.random.Generator) -> None:
    pairs = [pair([a], [b]) for a, b in rng.random((400, 2))]
    answers = ScriptedTeacher(TeacherConfig(eps_equal=0.1, return_range=(0.0, 1.0))).label(pairs, TASK)
    for p, a in zip(pairs, answers):
        close = abs(p.first_rewards[0] - p.second_rewards[0]) < 0.1
        assert (a.label is Label.NONE) == close
        assert a.abstain_reason is None  # a tie is a genuine "no preference", not an abstain


def test_thresholds_follow_the_range_seen_so_far() -> None:
    teacher = ScriptedTeacher(TeacherConfig(eps_equal=0.1))
    # Range so far is [0, 1]: a gap of 0.05 is a tie.
    [_, tie] = teacher.label([pair([0.0], [1.0]), pair([0.5], [0.55])], TASK)
    assert tie.label is Label.NONE and tie.meta["return_range"] == [0.0, 1.0]
    # Once returns up to 10 were seen, the same threshold is 1.0 wide: 0.5 vs 1.2 is a tie too.
    [_, tie] = teacher.label([pair([0.0], [10.0]), pair([0.5], [1.2])], TASK)
    assert tie.label is Label.NONE and tie.meta["return_range"] == [0.0, 10.0]


def test_seed_makes_noise_reproducible(rng: np.random.Generator) -> None:
    pairs = segment_pairs(rng, 200)

    def labels(seed: int) -> list[Label]:
        return [a.label for a in ScriptedTeacher(TeacherConfig(beta=1.0, eps_mistake=0.1), seed=seed).label(pairs, TASK)]

    assert labels(3) == labels(3)
    assert labels(3) != labels(4)


def test_identity_carries_every_noise_parameter() -> None:
    noisy = ScriptedTeacher(TeacherConfig(beta=1.0, gamma=0.9, eps_mistake=0.1, eps_skip=0.2, eps_equal=0.05), seed=5)
    identity = noisy.identity()
    assert {k: identity[k] for k in ("beta", "gamma", "eps_mistake", "eps_skip", "eps_equal", "seed")} == {
        "beta": 1.0, "gamma": 0.9, "eps_mistake": 0.1, "eps_skip": 0.2, "eps_equal": 0.05, "seed": 5,
    }
    # A rational teacher's answers do not depend on its seed, so neither does its identity.
    assert ScriptedTeacher(seed=1).identity() == ScriptedTeacher(seed=2).identity()
    noisy = TeacherConfig(eps_mistake=0.1)
    assert ScriptedTeacher(noisy, seed=1).identity() != ScriptedTeacher(noisy, seed=2).identity()


def test_spec_presets_and_options() -> None:
    teacher = make_backend("scripted:mistake", seed=3, eps_equal=0.05)
    assert isinstance(teacher, ScriptedTeacher)
    assert (teacher.config.eps_mistake, teacher.config.eps_equal, teacher.seed) == (0.1, 0.05, 3)
    assert make_backend("scripted").config == TeacherConfig()
    assert make_backend("scripted:stoc").config.beta == 1.0
    with pytest.raises(UnknownNameError, match="oracle"):
        make_backend("scripted:grumpy")
    with pytest.raises(ConfigError, match="eps_typo"):
        make_backend("scripted", eps_typo=0.1)
    with pytest.raises(ConfigError, match="gamma"):
        make_backend("scripted", gamma=0.0)
    # --backend-opt values arrive as text when they are not JSON: a wrong type is a ConfigError too.
    with pytest.raises(ConfigError, match="eps_mistake: expected a number, got 'abc'"):
        make_backend("scripted", eps_mistake="abc")
    assert make_backend("scripted", return_range=[0, 2]).config.return_range == (0.0, 2.0)
    with pytest.raises(ConfigError, match="base URL"):
        make_backend("scripted@http://localhost:1/v1")


def test_pairs_without_rewards_fail_cleanly(rng: np.random.Generator) -> None:
    no_rewards = FramePair(FRAME, FRAME)
    with pytest.raises(BackendError, match="needs ground-truth rewards"):
        ScriptedTeacher().label([no_rewards], TASK)
    [result] = Labeler(ScriptedTeacher(), TASK, None, LabelerConfig(progress=False)).label([no_rewards])
    assert result.failed and result.label is Label.NONE


def test_store_keeps_pixel_identical_pairs_with_different_rewards_apart(tmp_path) -> None:
    """Identical frames from different states (hidden velocity, say) get their own answers."""
    from rlvlmf.feedback.store import QueryStore

    forward, backward = pair([0.2], [0.9]), pair([0.9], [0.2])  # same pixels, opposite truths
    labeler = Labeler(ScriptedTeacher(), TASK, QueryStore(tmp_path), LabelerConfig(progress=False))
    first = labeler.label([forward])
    # A later query (same batch or a warm store) with the same frames must not reuse that answer.
    again = labeler.label([backward, forward])
    assert [r.label for r in first] == [Label.SECOND]
    assert [r.label for r in again] == [Label.FIRST, Label.SECOND]
    assert again[1].from_store and not again[0].from_store and again[0].key != again[1].key
    # The rewards' exact values are the key; equal rewards still share one row.
    warm = Labeler(ScriptedTeacher(), TASK, QueryStore(tmp_path), LabelerConfig(progress=False))
    assert warm.label([pair([0.2], [0.9])])[0].from_store
