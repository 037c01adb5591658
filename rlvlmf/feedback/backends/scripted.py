"""The scripted teacher of B-Pref: preferences from ground-truth rewards, with human-like noise.

Given the rewards of two segments (or single frames), the teacher compares their returns:

* **skip** (``eps_skip``): abstain when both undiscounted returns are in the lowest
  ``eps_skip`` fraction of the return range (``lo + eps_skip * (hi - lo)``), i.e. neither
  segment shows anything worth judging.
* **myopia** (``gamma``): the comparison uses discounted returns, step ``t`` of ``T``
  weighted ``gamma ** (T - 1 - t)``, so late steps count most.
* **rationality** (``beta``): with ``beta > 0`` the label is drawn from the Bradley-Terry
  model, ``P(second) = sigmoid(beta * (R2 - R1))``; with ``beta`` ``None`` or ``<= 0`` the
  teacher is perfectly rational (larger return wins, an exact tie is no preference).
* **mistake** (``eps_mistake``): the label is flipped with this probability.
* **equal** (``eps_equal``): no preference when the undiscounted returns differ by less
  than ``eps_equal * (hi - lo)``.

``lo, hi`` is the return range: ``return_range`` when given, else the smallest and largest
segment return this teacher has seen so far (current batch included). B-Pref scales its
thresholds by the average return of recent episodes, which the teacher cannot see from a
batch of pairs; the running range is the closest stand-in that needs no extra input and does
not depend on the sign of the rewards. Pass ``return_range`` for thresholds that do not drift.
With every ``eps`` at 0 and no ``beta`` (the defaults), the teacher is perfectly rational.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from rlvlmf.config import from_dict
from rlvlmf.envs.task import TaskDescription
from rlvlmf.errors import ConfigError, UnknownNameError
from rlvlmf.feedback.base import Answer, Backend, BackendError, FramePair, Label, RngLike, backend_seed

SKIP_REASON = "skip: both returns below the skip threshold"
"""``Answer.abstain_reason`` of a skipped query."""


@dataclass(frozen=True)
class TeacherConfig:
    """Noise model of the scripted teacher (B-Pref).

    Attributes:
        beta: Bradley-Terry rationality; ``None`` or ``<= 0`` means perfectly rational.
        gamma: Myopic discount over the segment, in (0, 1]; 1 weighs every step equally.
        eps_mistake: Probability of flipping the label, in [0, 1].
        eps_skip: Skip threshold as a fraction of the return range, in [0, 1].
        eps_equal: Tie threshold as a fraction of the return range, in [0, 1].
        return_range: Fixed ``(lo, hi)`` segment-return range for the thresholds; ``None``
            uses the range of returns seen so far.
    """

    beta: float | None = None
    gamma: float = 1.0
    eps_mistake: float = 0.0
    eps_skip: float = 0.0
    eps_equal: float = 0.0
    return_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"scripted teacher: gamma must be in (0, 1], got {self.gamma}")
        for name in ("eps_mistake", "eps_skip", "eps_equal"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"scripted teacher: {name} must be in [0, 1], got {value}")
        if self.return_range is not None:
            lo, hi = (float(v) for v in self.return_range)
            if not lo <= hi:
                raise ConfigError(f"scripted teacher: return_range must be (lo, hi) with lo <= hi, got {self.return_range}")
            object.__setattr__(self, "return_range", (lo, hi))

    @property
    def rational(self) -> bool:
        """Whether labels follow the larger return deterministically (before mistakes)."""
        return self.beta is None or self.beta <= 0

    @property
    def stochastic(self) -> bool:
        """Whether answers depend on the random generator."""
        return not self.rational or self.eps_mistake > 0


TEACHER_PRESETS: dict[str, TeacherConfig] = {
    "oracle": TeacherConfig(),
    "stoc": TeacherConfig(beta=1.0),
    "mistake": TeacherConfig(eps_mistake=0.1),
    "skip": TeacherConfig(eps_skip=0.1),
    "equal": TeacherConfig(eps_equal=0.1),
    "myopic": TeacherConfig(gamma=0.9),
}
"""The simulated teachers of the B-Pref benchmark, usable as ``scripted:<name>``."""


def discounted_return(rewards: np.ndarray, gamma: float) -> float:
    """Myopic return of a segment.

    Args:
        rewards: Shape ``(T,)`` (or anything that flattens to it) rewards, oldest first.
        gamma: Discount; step ``t`` gets weight ``gamma ** (T - 1 - t)``.

    Returns:
        The weighted sum.
    """
    flat = np.asarray(rewards, dtype=np.float64).reshape(-1)
    weights = gamma ** np.arange(flat.size - 1, -1, -1, dtype=np.float64)
    return float(np.dot(weights, flat))


def teacher_answer(
    first_rewards: np.ndarray,
    second_rewards: np.ndarray,
    config: TeacherConfig,
    return_range: tuple[float, float],
    rng: np.random.Generator,
) -> Answer:
    """One noisy-teacher preference (pure apart from the draws from ``rng``).

    Args:
        first_rewards: Shape ``(T,)`` rewards of the first segment.
        second_rewards: Shape ``(T,)`` rewards of the second segment.
        config: The noise model.
        return_range: ``(lo, hi)`` range the skip and equal thresholds are fractions of.
        rng: Source of the Bradley-Terry and mistake draws.

    Returns:
        The answer; ``prob_second`` is the probability this teacher answers "second"
        (Bradley-Terry and mistake noise included), ``None`` when it skipped.
    """
    first_sum = float(np.sum(first_rewards))
    second_sum = float(np.sum(second_rewards))
    lo, hi = return_range
    span = hi - lo
    stages = (f"returns {first_sum:.6g} vs {second_sum:.6g}",)
    if config.eps_skip > 0 and max(first_sum, second_sum) < lo + config.eps_skip * span:
        return Answer(Label.NONE, None, stages, abstain_reason=SKIP_REASON)

    first_disc = discounted_return(first_rewards, config.gamma)
    second_disc = discounted_return(second_rewards, config.gamma)
    if config.rational:
        p_second = 1.0 if second_disc > first_disc else 0.0 if second_disc < first_disc else 0.5
        label = Label.SECOND if p_second == 1.0 else Label.FIRST if p_second == 0.0 else Label.NONE
    else:
        assert config.beta is not None  # not rational: beta > 0
        p_second = float(1.0 / (1.0 + np.exp(-config.beta * (second_disc - first_disc))))
        label = Label.SECOND if rng.random() < p_second else Label.FIRST
    if config.eps_mistake > 0:
        if label is not Label.NONE and rng.random() < config.eps_mistake:
            label = Label.FIRST if label is Label.SECOND else Label.SECOND
        p_second = p_second * (1.0 - config.eps_mistake) + (1.0 - p_second) * config.eps_mistake
    if config.eps_equal > 0 and abs(first_sum - second_sum) < config.eps_equal * span:
        label = Label.NONE
    return Answer(label, p_second, stages)


class ScriptedTeacher(Backend):
    """B-Pref scripted teacher: labels from ground-truth rewards with optional noise."""

    family: ClassVar[str] = "scripted"
    description: ClassVar[str] = "B-Pref scripted teacher from ground-truth rewards (beta, gamma, eps_mistake/skip/equal)"
    version: ClassVar[str] = "1"

    max_batch = 4096

    def __init__(self, config: TeacherConfig | None = None, *, seed: int | None = None, preset: str | None = None) -> None:
        """Create a teacher.

        Args:
            config: Noise model; defaults to perfectly rational.
            seed: Seed of the teacher's own generator (noise draws).
            preset: Name of the preset the config came from, kept for display only.
        """
        self.config = config or TeacherConfig()
        self.seed = seed
        self.preset = preset
        self._rng = np.random.default_rng(seed)
        self._seen: tuple[float, float] | None = None
        self._lock = threading.Lock()  # alabel runs label() in worker threads, maybe several at once

    @classmethod
    def from_spec(cls, model: str | None, base_url: str | None, *, rng: RngLike = None, **options: Any) -> ScriptedTeacher:
        """Build from ``scripted[:preset]``; options override the preset's fields plus ``seed``.

        The noise draws come from ``seed`` when given as an option, else from ``rng`` (a seed,
        or a generator that gives one draw for it; see ``backend_seed``).

        Raises:
            ConfigError: A base URL was given or an option is unknown / out of range.
            UnknownNameError: Unknown preset.
        """
        if base_url is not None:
            raise ConfigError("the scripted teacher runs locally and takes no base URL")
        preset = (model or "oracle").lower()
        if preset not in TEACHER_PRESETS:
            raise UnknownNameError(f"unknown scripted teacher preset {model!r}; available: {', '.join(TEACHER_PRESETS)}")
        seed = options.pop("seed", None)
        fields = set(asdict(TeacherConfig()))
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(f"unknown scripted teacher option(s) {unknown}; valid: {sorted(fields | {'seed'})}")
        # from_dict checks each value's type too ("eps_mistake=abc" is one clear line, not a TypeError).
        config = from_dict(TeacherConfig, {**asdict(TEACHER_PRESETS[preset]), **options})
        return cls(config, seed=backend_seed(rng if seed is None else seed), preset=preset)

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"family": self.family, "version": self.version, **asdict(self.config)}
        if self.config.return_range is not None:
            identity["return_range"] = list(self.config.return_range)
        if self.config.stochastic:
            # Only a noisy teacher's answers depend on its seed; a rational one shares cache rows.
            identity["seed"] = self.seed
        return identity

    def pair_identity(self, pair: FramePair) -> dict[str, Any] | None:
        """The rewards this teacher labels from: pixel-identical frames from different states
        (a hidden velocity, a cart behind the crop) must not share one stored answer."""
        if pair.first_rewards is None or pair.second_rewards is None:
            return None  # label() refuses such a pair; no answer is ever stored under this key
        return {"rewards": [np.asarray(r, np.float64).reshape(-1).tolist() for r in (pair.first_rewards, pair.second_rewards)]}

    def label(self, pairs: Sequence[FramePair], task: TaskDescription) -> list[Answer]:
        """Label pairs from their ``first_rewards`` / ``second_rewards``.

        Raises:
            BackendError: A pair carries no rewards (not retryable).
        """
        rewards: list[tuple[np.ndarray, np.ndarray]] = []
        for index, pair in enumerate(pairs):
            if pair.first_rewards is None or pair.second_rewards is None:
                raise BackendError(
                    f"scripted teacher needs ground-truth rewards, but pair {index} has none "
                    "(FramePair.first_rewards/second_rewards); use a VLM backend for frames without rewards"
                )
            rewards.append((pair.first_rewards, pair.second_rewards))
        with self._lock:
            sums = [float(np.sum(r)) for both in rewards for r in both]
            if sums:
                lo, hi = min(sums), max(sums)
                if self._seen is not None:
                    lo, hi = min(lo, self._seen[0]), max(hi, self._seen[1])
                self._seen = (lo, hi)
            return_range = self.config.return_range or self._seen or (0.0, 0.0)
            answers = []
            for first_rewards, second_rewards in rewards:
                answer = teacher_answer(first_rewards, second_rewards, self.config, return_range, self._rng)
                answer.meta["return_range"] = list(return_range)
                answers.append(answer)
            return answers
