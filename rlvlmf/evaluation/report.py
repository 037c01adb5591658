"""Report over many runs: learning curves, final IQM with CIs, success, labels and VLM cost.

``build_report`` turns run records (see ``rlvlmf.evaluation.runs``) into numbers, grouped by
method and task; ``write_report`` renders them as PNG plots, a Markdown table, a
self-contained HTML page (images embedded) and ``report.json`` with every number.

Per (method, task) group, a run's score is the mean return of its last evaluation. Finished
runs are used when the group has any; otherwise every run's latest evaluation, marked
*partial*. Intervals are 95% bootstrap percentile intervals; the across-task aggregate uses
the stratified bootstrap on returns min-max normalised per task over all runs in the report.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlvlmf.errors import ConfigError
from rlvlmf.evaluation.runs import TRAINING_COLUMNS, Run
from rlvlmf.evaluation.stats import Interval, bootstrap_curve, iqm, mean, stratified_bootstrap_ci
from rlvlmf.utils.atomic import atomic_open, atomic_write_text


@dataclass(frozen=True)
class Curve:
    """Mean learning curve of a group with a pointwise bootstrap band.

    Attributes:
        steps: Evaluation steps, shape (points,).
        mean: Mean over runs at each step, shape (points,).
        low: Lower band, shape (points,).
        high: Upper band, shape (points,).
    """

    steps: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class GroupResult:
    """Everything reported for one (method, task) group.

    Attributes:
        method: Method label.
        task: Preset name.
        runs: Runs in the group.
        finished: Finished runs in the group.
        partial: True when no run finished and scores are the latest evaluations.
        final_step: Mean step of the evaluations scored.
        final_return: IQM of per-run final mean returns, with CI.
        success_rate: Mean of per-run final success rates with CI; ``None`` without success.
        labels_per_run: Mean labels used per run; ``None`` if no run records labels.
        label_accuracy: Mean agreement of labels with the ground truth; ``None`` if unrecorded.
        cost_usd_total: Summed VLM cost; ``None`` if no run records a cost.
        return_curve: Mean eval return over steps.
        success_curve: Mean success rate over steps, ``None`` without success.
        training: Training scalars from ``metrics.csv`` (``runs.TRAINING_COLUMNS``): column ->
            mean over runs, with the runs' range as the band.
    """

    method: str
    task: str
    runs: int
    finished: int
    partial: bool
    final_step: float
    final_return: Interval
    success_rate: Interval | None
    labels_per_run: float | None
    label_accuracy: float | None
    cost_usd_total: float | None
    return_curve: Curve
    success_curve: Curve | None
    training: dict[str, Curve] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """Numbers of a report.

    Attributes:
        groups: One result per (method, task), sorted by task then method.
        overall: Method -> IQM of normalised final returns over all tasks (stratified
            bootstrap); empty with a single task.
        confidence: Interval coverage.
        reps: Bootstrap replicates.
    """

    groups: tuple[GroupResult, ...]
    overall: dict[str, Interval]
    confidence: float
    reps: int

    @property
    def tasks(self) -> list[str]:
        """Tasks in report order."""
        return list(dict.fromkeys(g.task for g in self.groups))

    @property
    def methods(self) -> list[str]:
        """Methods, sorted."""
        return sorted({g.method for g in self.groups})


def build_report(runs: Sequence[Run], *, rng: np.random.Generator, reps: int = 2000, confidence: float = 0.95) -> Report:
    """Group runs by (method, task) and compute curves, final IQMs, success, labels and cost.

    Args:
        runs: Loaded runs; runs with no evaluation yet are left out.
        rng: Source of every bootstrap resample.
        reps: Bootstrap replicates per interval.
        confidence: Interval coverage.

    Raises:
        ConfigError: No run has an evaluation yet.
    """
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.evals:
            grouped.setdefault((run.task, run.method), []).append(run)
    if not grouped:
        raise ConfigError("none of the runs has an evaluation yet (eval.jsonl is missing or empty)")
    groups: list[GroupResult] = []
    scored: dict[tuple[str, str], list[Run]] = {}
    for (task, method), members in sorted(grouped.items()):
        finished = [r for r in members if r.finished]
        use = finished or members
        scored[(task, method)] = use
        finals = [r.final for r in use if r.final is not None]
        successes = [p.success_rate for p in finals if p.success_rate is not None]
        has_success = len(successes) == len(finals)
        labels = [r.labels for r in members if r.labels is not None]
        costs = [r.cost_usd for r in members if r.cost_usd is not None]
        accuracies = [r.label_accuracy for r in members if r.label_accuracy is not None]
        groups.append(
            GroupResult(
                method=method,
                task=task,
                runs=len(members),
                finished=len(finished),
                partial=not finished,
                final_step=float(np.mean([p.step for p in finals])),
                final_return=stratified_bootstrap_ci(
                    {task: [p.return_mean for p in finals]}, iqm, rng=rng, reps=reps, confidence=confidence
                ),
                success_rate=stratified_bootstrap_ci(
                    {task: successes}, mean, rng=rng, reps=reps, confidence=confidence
                )
                if has_success
                else None,
                labels_per_run=float(np.mean(labels)) if labels else None,
                label_accuracy=float(np.mean(accuracies)) if accuracies else None,
                cost_usd_total=float(np.sum(costs)) if costs else None,
                return_curve=_curve(members, lambda p: p.return_mean, rng, reps, confidence),
                success_curve=_curve(members, lambda p: p.success_rate, rng, reps, confidence) if has_success else None,
                training={column: curve for column in TRAINING_COLUMNS
                          if (curve := _training_curve(members, column)) is not None},
            )
        )
    return Report(tuple(groups), _overall(scored, rng, reps, confidence), confidence, reps)


def _curve(members: list[Run], value: Any, rng: np.random.Generator, reps: int, confidence: float) -> Curve:
    steps = sorted({p.step for r in members for p in r.evals})
    column = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(members), len(steps)), np.nan)
    for row, run in enumerate(members):
        for point in run.evals:
            grid[row, column[point.step]] = value(point)
    center, low, high = bootstrap_curve(grid, rng=rng, reps=reps, confidence=confidence)
    return Curve(tuple(steps), tuple(center.tolist()), tuple(low.tolist()), tuple(high.tolist()))


def _training_curve(members: list[Run], column: str, max_points: int = 300) -> Curve | None:
    """Mean of the runs' ``column`` over steps (each run interpolated onto the union of their
    steps, inside its own range only) with the runs' min-max as the band."""
    series = [run.training[column] for run in members if column in run.training]
    if not series:
        return None
    steps = np.unique(np.concatenate([np.asarray(s, float) for s, _ in series]))
    if len(steps) > max_points:
        steps = steps[np.linspace(0, len(steps) - 1, max_points).round().astype(int)]
    grid = np.full((len(series), len(steps)), np.nan)
    for row, (run_steps, values) in enumerate(series):
        inside = (steps >= run_steps[0]) & (steps <= run_steps[-1])
        grid[row, inside] = np.interp(steps[inside], run_steps, values)
    keep = ~np.all(np.isnan(grid), axis=0)
    grid, steps = grid[:, keep], steps[keep]
    return Curve(tuple(int(s) for s in steps), tuple(np.nanmean(grid, axis=0).tolist()),
                 tuple(np.nanmin(grid, axis=0).tolist()), tuple(np.nanmax(grid, axis=0).tolist()))


def _overall(
    scored: dict[tuple[str, str], list[Run]], rng: np.random.Generator, reps: int, confidence: float
) -> dict[str, Interval]:
    """IQM over tasks per method of final returns normalised to [0, 1] per task."""
    tasks = sorted({task for task, _ in scored})
    if len(tasks) < 2:
        return {}
    bounds: dict[str, tuple[float, float]] = {}
    for task in tasks:
        values = [r.final.return_mean for (t, _), rs in scored.items() if t == task for r in rs if r.final]
        bounds[task] = (min(values), max(values))
    overall: dict[str, Interval] = {}
    for method in sorted({m for _, m in scored}):
        by_task: dict[str, list[float]] = {}
        for task in tasks:
            low, high = bounds[task]
            span = high - low if high > low else 1.0
            runs = scored.get((task, method), [])
            by_task[task] = [(r.final.return_mean - low) / span for r in runs if r.final]
        if all(by_task.values()):  # only methods run on every task are comparable across tasks
            overall[method] = stratified_bootstrap_ci(by_task, iqm, rng=rng, reps=reps, confidence=confidence)
    return overall


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------

RETURN_CURVES = "return_curves.png"
SUCCESS_CURVES = "success_curves.png"
TRAINING_CURVES = "training_curves.png"
FINAL_IQM = "final_iqm.png"

SECTION_TITLES = {
    RETURN_CURVES: "Evaluation return",
    SUCCESS_CURVES: "Evaluation success rate",
    TRAINING_CURVES: "Training: episode return, learned-reward return, label accuracy, reward-fit accuracy",
    FINAL_IQM: "Final return (IQM over runs)",
}
"""Heading of each plot in report.md and report.html."""

TRAINING_LABELS = {
    "train/episode_return": "episode return (env reward)",
    "train/learned_return": "episode return (learned reward)",
    "feedback/round_label_accuracy": "label accuracy vs ground truth",
    "reward/train_acc": "reward-fit accuracy",
}


def write_report(report: Report, out: str | os.PathLike[str], *, title: str = "rlvlmf report") -> dict[str, Path]:
    """Write PNG plots, ``report.md``, ``report.html`` and ``report.json`` into ``out``.

    Returns:
        File kind (``markdown``, ``html``, ``json`` and each plot's name) -> path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _colors(report.methods)
    images = {RETURN_CURVES: _plot_curves(report, colors, "return_curve", "eval return")}
    if any(g.success_curve is not None for g in report.groups):
        images[SUCCESS_CURVES] = _plot_curves(report, colors, "success_curve", "success rate")
    if any(g.training for g in report.groups):
        images[TRAINING_CURVES] = _plot_training(report, colors)
    images[FINAL_IQM] = _plot_final(report, colors)
    written: dict[str, Path] = {}
    for name, png in images.items():
        with atomic_open(out_dir / name, "wb") as handle:
            handle.write(png)
        written[name] = out_dir / name
    tables = markdown_tables(report)
    markdown = f"# {title}\n\n{tables}\n" + "".join(f"## {SECTION_TITLES[n]}\n\n![{SECTION_TITLES[n]}]({n})\n\n"
                                                       for n in images)
    atomic_write_text(out_dir / "report.md", markdown)
    atomic_write_text(out_dir / "report.html", _html(report, images, title))
    atomic_write_text(out_dir / "report.json", json.dumps(report_dict(report), indent=2) + "\n")
    written.update(markdown=out_dir / "report.md", html=out_dir / "report.html", json=out_dir / "report.json")
    return written


def report_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {
        "confidence": report.confidence,
        "reps": report.reps,
        "groups": [asdict(g) for g in report.groups],
        "overall": {m: asdict(i) for m, i in report.overall.items()},
    }


def results_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-(task, method) results table, as text cells."""
    pct = round(report.confidence * 100)
    head = [
        "task",
        "method",
        "runs (finished)",
        "step",
        f"final return IQM [{pct}% CI]",
        f"success rate [{pct}% CI]",
        "labels / run",
        "label accuracy",
        "VLM cost (USD)",
    ]
    rows = [
        [
            g.task,
            g.method,
            f"{g.runs} ({g.finished}){' partial' if g.partial else ''}",
            f"{g.final_step:.0f}",
            format_interval(g.final_return),
            format_interval(g.success_rate, percent=True),
            _fmt(g.labels_per_run, ".0f"),
            _fmt(g.label_accuracy, ".0%"),
            _fmt(g.cost_usd_total, ".4f"),
        ]
        for g in report.groups
    ]
    return head, rows


def overall_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the across-task table (empty rows with a single task)."""
    rows = [[m, format_interval(i, digits=3), str(i.n)] for m, i in report.overall.items()]
    return ["method", "normalised IQM", "runs"], rows


def markdown_tables(report: Report) -> str:
    """The results table, and the across-task table with several tasks, as Markdown."""
    text = _markdown_table(*results_table(report))
    if report.overall:
        text += f"\n{_overall_caption(report)}:\n\n" + _markdown_table(*overall_table(report))
    return text


def _overall_caption(report: Report) -> str:
    pct = round(report.confidence * 100)
    return f"Across tasks: IQM of final returns min-max normalised per task, stratified bootstrap {pct}% CI"


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_interval(interval: Interval | None, *, percent: bool = False, digits: int = 1) -> str:
    """``point [low, high]``; percentages for rates; ``-`` for none."""
    if interval is None:
        return "-"
    if percent:
        return f"{interval.point:.0%} [{interval.low:.0%}, {interval.high:.0%}]"
    return f"{interval.point:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _colors(methods: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _subplots(count: int):  # noqa: ANN202 - matplotlib figure and axes
    import matplotlib.pyplot as plt

    cols = min(3, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _plot_curves(report: Report, colors: dict[str, Any], attribute: str, ylabel: str) -> bytes:
    tasks = report.tasks
    fig, axes = _subplots(len(tasks))
    for ax, task in zip(axes, tasks):
        for group in (g for g in report.groups if g.task == task):
            curve: Curve | None = getattr(group, attribute)
            if curve is None:
                continue
            # A marker on every point of a short curve: a single evaluation is a dot, not nothing.
            ax.plot(curve.steps, curve.mean, color=colors[group.method], label=f"{group.method} (n={group.runs})",
                    marker="o" if len(curve.steps) <= 20 else None, markersize=4)
            ax.fill_between(curve.steps, curve.low, curve.high, color=colors[group.method], alpha=0.2, linewidth=0)
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def _plot_training(report: Report, colors: dict[str, Any]) -> bytes:
    """One row per task, one column per training scalar any run recorded."""
    import matplotlib.pyplot as plt

    tasks = report.tasks
    columns = [c for c in TRAINING_COLUMNS if any(c in g.training for g in report.groups)]
    fig, axes = plt.subplots(len(tasks), len(columns), figsize=(4.2 * len(columns), 3.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        for col, column in enumerate(columns):
            ax = axes[row][col]
            for group in (g for g in report.groups if g.task == task and column in g.training):
                curve = group.training[column]
                ax.plot(curve.steps, curve.mean, color=colors[group.method], label=f"{group.method} (n={group.runs})",
                        marker="o" if len(curve.steps) <= 20 else None, markersize=4)
                if group.runs > 1:
                    ax.fill_between(curve.steps, curve.low, curve.high, color=colors[group.method], alpha=0.2,
                                    linewidth=0)
            ax.set_title(f"{task}: {TRAINING_LABELS[column]}", fontsize="medium")
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize="small")
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def _plot_final(report: Report, colors: dict[str, Any]) -> bytes:
    tasks = report.tasks
    fig, axes = _subplots(len(tasks))
    for ax, task in zip(axes, tasks):
        groups = [g for g in report.groups if g.task == task]
        for y, group in enumerate(groups):
            interval = group.final_return
            ax.plot([interval.low, interval.high], [y, y], color=colors[group.method], linewidth=6, alpha=0.5)
            ax.plot([interval.point], [y], marker="|", markersize=14, color="black")
        ax.set_yticks(range(len(groups)), [g.method for g in groups])
        ax.set_ylim(-0.7, len(groups) - 0.3)
        ax.set_title(task)
        ax.set_xlabel(f"final return IQM ({round(report.confidence * 100)}% CI)")
        ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def _png(fig: Any) -> bytes:
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _html(report: Report, images: dict[str, bytes], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _html_table(*results_table(report)),
    ]
    if report.overall:
        parts += [f"<h2>{html.escape(_overall_caption(report))}</h2>", _html_table(*overall_table(report))]
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        heading = html.escape(SECTION_TITLES[name])
        parts.append(f'<h2>{heading}</h2><img alt="{heading}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    lines = [f"<table><thead><tr>{cells}</tr></thead><tbody>"]
    for row in rows:
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)
