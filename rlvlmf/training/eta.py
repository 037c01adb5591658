"""Time left in a run, counting its slow phases apart from its steps.

A plain steps-per-second rate is wrong twice over: the random-action seed phase is much
faster than SAC steps, and feedback rounds (labelling, reward fit, relabelling) and
evaluations stall the step counter for seconds to minutes each. The estimate here is
``steps left x recent seconds per plain step + rounds left x mean round time + evaluations
left x mean evaluation time``, each measured on this run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Weight of the newest step in the moving average of a plain step's time (about the last 100 steps).
STEP_SMOOTHING = 0.01


@dataclass
class PhaseTimes:
    """Measured durations of the three kinds of work in a run."""

    step_s: float | None = None
    """Moving average of the seconds of one step without a feedback round or evaluation."""
    round_s: float = 0.0
    """Total seconds spent in feedback rounds so far."""
    rounds: int = 0
    evals_s: float = 0.0
    """Total seconds spent in evaluations so far."""
    evals: int = 0

    @property
    def slow_s(self) -> float:
        """Seconds spent in feedback rounds and evaluations together."""
        return self.round_s + self.evals_s

    def add_step(self, seconds: float) -> None:
        self.step_s = seconds if self.step_s is None else (1 - STEP_SMOOTHING) * self.step_s + STEP_SMOOTHING * seconds

    def add_round(self, seconds: float, *, finished: bool = True) -> None:
        """Seconds a feedback round held up training; a round that started but is still being
        labelled (``feedback_lag``) adds its seconds with ``finished=False`` and counts once, at its fit."""
        self.round_s += seconds
        self.rounds += int(finished)

    def add_eval(self, seconds: float) -> None:
        self.evals_s += seconds
        self.evals += 1

    def eta(self, steps_left: int, rounds_left: int, evals_left: int) -> float | None:
        """Seconds left, or ``None`` before any step was timed.

        A phase not seen yet (no round so far) adds nothing rather than a guess.
        """
        if self.step_s is None:
            return None
        per_round = self.round_s / self.rounds if self.rounds else 0.0
        per_eval = self.evals_s / self.evals if self.evals else 0.0
        return steps_left * self.step_s + rounds_left * per_round + evals_left * per_eval


def rounds_left(step: int, steps: int, next_feedback: int, num_interact: int, queries: int, max_feedback: int,
                reward_batch: int) -> int:
    """Feedback rounds still to come: limited by the schedule and by the query budget."""
    if next_feedback > steps or queries >= max_feedback:
        return 0
    by_schedule = (steps - max(next_feedback, step)) // num_interact + 1
    by_budget = math.ceil((max_feedback - queries) / reward_batch)
    return max(0, min(by_schedule, by_budget))


def evals_left(step: int, steps: int, next_eval: int, eval_every: int) -> int:
    """Evaluations still to come, the one at the last step included."""
    if step >= steps:
        return 0
    if not eval_every:
        return 1
    regular = max(0, (steps - 1 - next_eval) // eval_every + 1) if next_eval < steps else 0
    return regular + 1


def format_duration(seconds: float | None) -> str:
    """``"1h05m"``, ``"4m10s"``, ``"12s"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
