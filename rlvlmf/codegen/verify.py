"""Check generated reward functions on recorded episodes before anyone trains on them.

VLM-CaR's test: every checker must fire on successful episodes and rarely on random ones. A
function "fires" on an episode when its value reaches ``fire_threshold`` at any step. All
calls go through the ``Sandbox``; a function that breaks a limit or raises fails with the
sandbox's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from rlvlmf.codegen.prompts import CodeExtractionError, GeneratedProgram, parse_program
from rlvlmf.codegen.sandbox import Sandbox, SandboxLimits, SandboxRejected
from rlvlmf.errors import ConfigError


@dataclass(frozen=True)
class VerificationConfig:
    """Pass marks of a generated program.

    Attributes:
        fire_threshold: A function fires at a step when its value is >= this (booleans are 0/1).
        min_success_fire_rate: Least fraction of successful episodes each function must fire on.
        max_random_fire_rate: Most fraction of random episodes the goal function may fire on.
        max_random_fire_rate_subgoal: The same for sub-goals, looser because early sub-goals
            (e.g. "the gripper is open") can hold by chance.
        chunk_size: Observations per sandbox call, so one call's time limit stays meaningful.
    """

    fire_threshold: float = 0.5
    min_success_fire_rate: float = 0.9
    max_random_fire_rate: float = 0.1
    max_random_fire_rate_subgoal: float = 0.5
    chunk_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("min_success_fire_rate", "max_random_fire_rate", "max_random_fire_rate_subgoal"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")


@dataclass(frozen=True)
class FunctionReport:
    """How one generated function did.

    Attributes:
        name: Function name.
        kind: ``"subgoal"`` or ``"goal"``.
        passed: Whether it met every pass mark.
        success_fire_rate: Fraction of successful episodes it fired on (``None`` if it failed to run).
        random_fire_rate: Fraction of random episodes it fired on (``None`` if it failed to run).
        first_fire: Mean position (0 = first step, 1 = last) of its first firing on the
            successful episodes it fired on; sub-goals should fire in order.
        reason: Why it failed, or ``None``.
    """

    name: str
    kind: str
    passed: bool
    success_fire_rate: float | None = None
    random_fire_rate: float | None = None
    first_fire: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class VerificationReport:
    """Verdict on a whole program.

    Attributes:
        functions: One report per function, sub-goals in order then the goal.
        load_error: Why the program could not be loaded at all, or ``None``.
        n_success: Successful episodes checked.
        n_random: Random episodes checked.
    """

    functions: tuple[FunctionReport, ...] = ()
    load_error: str | None = None
    n_success: int = 0
    n_random: int = 0

    @property
    def passed(self) -> bool:
        """Loaded, has functions, and every function passed."""
        return self.load_error is None and bool(self.functions) and all(f.passed for f in self.functions)

    def failures(self) -> list[str]:
        """One line per failure, written for the model that has to fix the code."""
        if self.load_error is not None:
            return [f"the code was rejected: {self.load_error}"]
        return [f"{f.name}: {f.reason}" for f in self.functions if not f.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the codegen records."""
        return {**asdict(self), "passed": self.passed}


def verify(
    code: str | GeneratedProgram,
    success_trajs: Sequence[np.ndarray],
    random_trajs: Sequence[np.ndarray],
    config: VerificationConfig | None = None,
    limits: SandboxLimits | None = None,
) -> VerificationReport:
    """Run every generated function on successful and random episodes.

    Args:
        code: The program, or its source (then ``goal`` and ``subgoal_<k>`` are looked up).
        success_trajs: Observations of successful episodes, each ``(T_i, obs_dim)``.
        random_trajs: Observations of random-policy episodes, each ``(T_j, obs_dim)``.
        config: Pass marks.
        limits: Sandbox limits for each call.

    Returns:
        The report; ``report.passed`` says whether training may use the program.

    Raises:
        ConfigError: No successful episodes, or episodes of different ``obs_dim``.
    """
    config = config or VerificationConfig()
    if not success_trajs:
        raise ConfigError("verification needs at least one successful episode")
    success = [np.asarray(t, dtype=np.float64) for t in success_trajs]
    randoms = [np.asarray(t, dtype=np.float64) for t in random_trajs]
    dims = {t.shape[1] for t in success + randoms if t.ndim == 2}
    if len(dims) != 1 or any(t.ndim != 2 or len(t) == 0 for t in success + randoms):
        raise ConfigError("episodes must be non-empty (T, obs_dim) arrays with one obs_dim")
    make_report = partial(VerificationReport, n_success=len(success), n_random=len(randoms))
    try:
        program = parse_program(code) if isinstance(code, str) else code
    except CodeExtractionError as exc:
        return make_report(load_error=str(exc))
    try:
        with Sandbox(program.code, program.function_names, limits) as box:
            reports = tuple(
                _check_function(box, name, name == program.goal, success, randoms, config)
                for name in program.function_names
            )
    except SandboxRejected as exc:
        return make_report(load_error=exc.reason)
    return make_report(functions=reports)


def _check_function(
    box: Sandbox,
    name: str,
    is_goal: bool,
    success: list[np.ndarray],
    randoms: list[np.ndarray],
    config: VerificationConfig,
) -> FunctionReport:
    kind = "goal" if is_goal else "subgoal"
    try:
        success_values = _evaluate(box, name, success, config.chunk_size)
        random_values = _evaluate(box, name, randoms, config.chunk_size)
    except SandboxRejected as exc:
        return FunctionReport(name, kind, passed=False, reason=f"rejected: {exc.reason}")
    success_fired = [np.flatnonzero(v >= config.fire_threshold) for v in success_values]
    success_rate = float(np.mean([len(f) > 0 for f in success_fired]))
    random_rate = float(np.mean([np.any(v >= config.fire_threshold) for v in random_values])) if randoms else 0.0
    positions = [f[0] / max(len(v) - 1, 1) for f, v in zip(success_fired, success_values) if len(f)]
    first_fire = float(np.mean(positions)) if positions else None
    max_random = config.max_random_fire_rate if is_goal else config.max_random_fire_rate_subgoal
    reasons = []
    if success_rate < config.min_success_fire_rate:
        reasons.append(
            f"fired on {success_rate:.0%} of {len(success)} successful episodes, needs at least "
            f"{config.min_success_fire_rate:.0%}"
        )
    if random_rate > max_random:
        reasons.append(f"fired on {random_rate:.0%} of {len(randoms)} random episodes, at most {max_random:.0%} allowed")
    return FunctionReport(
        name,
        kind,
        passed=not reasons,
        success_fire_rate=success_rate,
        random_fire_rate=random_rate,
        first_fire=first_fire,
        reason="; ".join(reasons) or None,
    )


def _evaluate(box: Sandbox, name: str, trajs: list[np.ndarray], chunk_size: int) -> list[np.ndarray]:
    """Values of ``name`` on each episode, computed on the concatenation in chunks."""
    if not trajs:
        return []
    stacked = np.concatenate(trajs)
    values = np.concatenate([box.call(name, stacked[i : i + chunk_size]) for i in range(0, len(stacked), chunk_size)])
    return np.split(values, np.cumsum([len(t) for t in trajs])[:-1])
