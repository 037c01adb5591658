"""The time-left estimate counts feedback rounds and evaluations apart from plain steps."""

from __future__ import annotations

import pytest

from rlvlmf.training.eta import PhaseTimes, evals_left, format_duration, rounds_left


def test_eta_adds_the_slow_phases_still_to_come() -> None:
    times = PhaseTimes()
    assert times.eta(100, 1, 1) is None  # nothing timed yet
    for _ in range(50):
        times.add_step(0.01)
    assert times.eta(1000, 0, 0) == pytest.approx(10.0)
    assert times.eta(1000, 3, 0) == pytest.approx(10.0)  # no round seen yet: no guess
    times.add_round(30.0)
    times.add_round(50.0)
    times.add_eval(5.0)
    assert times.slow_s == pytest.approx(85.0)
    # 1000 steps x 10 ms + 3 rounds x 40 s + 2 evaluations x 5 s
    assert times.eta(1000, 3, 2) == pytest.approx(10.0 + 120.0 + 10.0)


def test_step_time_follows_the_recent_rate() -> None:
    times = PhaseTimes()
    for _ in range(1000):
        times.add_step(0.001)  # random-action seed steps
    for _ in range(1000):
        times.add_step(0.02)  # SAC steps
    assert times.step_s == pytest.approx(0.02, rel=1e-3)


def test_rounds_left_is_bounded_by_schedule_and_budget() -> None:
    # Rounds at 2000, 7000, 12000, 17000 before 20000 steps; the budget allows 10000/50 = 200.
    assert rounds_left(0, 20_000, 2000, 5000, 0, 10_000, 50) == 4
    assert rounds_left(7500, 20_000, 12_000, 5000, 100, 10_000, 50) == 2
    assert rounds_left(7500, 20_000, 12_000, 5000, 9_960, 10_000, 50) == 1  # 40 queries left: one round
    assert rounds_left(7500, 20_000, 12_000, 5000, 10_000, 10_000, 50) == 0
    assert rounds_left(19_000, 20_000, 24_000, 5000, 0, 10_000, 50) == 0


def test_evals_left_counts_the_last_one() -> None:
    assert evals_left(0, 20_000, 10_000, 10_000) == 2  # at 10000 and at the end
    assert evals_left(0, 25_000, 10_000, 10_000) == 3  # 10000, 20000, the end
    assert evals_left(20_000, 20_000, 30_000, 10_000) == 0
    assert evals_left(100, 6000, 10_000, 10_000) == 1  # the README's first run: only the final one
    assert evals_left(0, 500, 0, 0) == 1


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (12.4, "12s"), (250, "4m10s"), (3900, "1h05m"),
                                               (float("inf"), "?"), (-3, "0s")])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
