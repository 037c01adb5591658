"""The report over synthetic run folders: grouping, numbers, and the files it writes."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from rlvlmf.cli import main
from rlvlmf.errors import UserError
from rlvlmf.evaluation import report as report_module
from rlvlmf.evaluation.report import (
    FINAL_IQM,
    RETURN_CURVES,
    SECTION_TITLES,
    SUCCESS_CURVES,
    TRAINING_CURVES,
    build_report,
    write_report,
)
from rlvlmf.evaluation.runs import find_runs, load_run
from rlvlmf.evaluation.sweep import MANIFEST_NAME

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    name: str,
    *,
    preset: str,
    reward: str,
    seed: int,
    final: float,
    successes: list[bool] | None = None,
    finished: bool = True,
    labels: int | None = None,
    cost: float | None = None,
    accuracy: float | None = None,
) -> Path:
    """A run folder like ``rlvlmf train`` writes: evals at steps 100 and 200 (final mean ``final``)."""
    run = root / name
    run.mkdir(parents=True)
    backend = "scripted" if reward == "preference" else None
    config = {"preset": preset, "reward": reward, "backend": backend, "seed": seed, "steps": 200}
    (run / "config.json").write_text(json.dumps(config))
    with (run / "eval.jsonl").open("w") as handle:
        for step, value in ((100, final / 2), (200, final)):
            row = {"step": step, "returns": [value - 1.0, value + 1.0], "successes": successes, "lengths": [10, 10]}
            handle.write(json.dumps(row) + "\n")
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", "train/episode_return", "feedback/labels", "feedback/cost_usd"])
        writer.writeheader()
        half = labels // 2 if labels is not None else ""
        writer.writerow({"step": 100, "train/episode_return": 1.0, "feedback/labels": half})
        writer.writerow({"step": 200, "train/episode_return": 2.0, "feedback/labels": "" if labels is None else labels,
                         "feedback/cost_usd": "" if cost is None else cost})
    if finished:
        summary = {"steps": 200, "labels": labels, "cost_usd": cost, "eval_return_mean": final,
                   "label_accuracy": accuracy, "wall_s": 1.0}
        (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """Two tasks x two methods x four seeds, plus an unfinished cartpole run of env.

    Final returns (hand-picked so IQMs are easy): cartpole env 100/200/300/1000 (IQM 250),
    cartpole preference 0 x4; drawer env 50 x4, drawer preference 0/100/100/100 (IQM 100).
    """
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate(zip([100, 200, 300, 1000], [0, 0, 0, 0])):
        make_run(root, f"env-cartpole-{seed}", preset="cartpole", reward="env", seed=seed, final=a)
        make_run(root, f"pref-cartpole-{seed}", preset="cartpole", reward="preference", seed=seed, final=b,
                 labels=100 if seed < 2 else 200, cost=0.5 if seed < 2 else 0.25, accuracy=0.8 + 0.1 * (seed % 2))
    make_run(root, "env-cartpole-9", preset="cartpole", reward="env", seed=9, final=5000, finished=False)
    drawer_success = [[True, True], [True, False], [False, False], [True, True]]
    for seed, (a, b) in enumerate(zip([50, 50, 50, 50], [0, 100, 100, 100])):
        make_run(root, f"env-drawer-{seed}", preset="drawer", reward="env", seed=seed, final=a,
                 successes=drawer_success[seed])
        make_run(root, f"pref-drawer-{seed}", preset="drawer", reward="preference", seed=seed, final=b,
                 successes=[False, False] if seed == 0 else [True, True], labels=40, cost=0.0)
    return root


def test_runs_are_grouped_and_scored(runs_root: Path) -> None:
    runs = find_runs([runs_root])
    assert len(runs) == 17
    report = build_report(runs, rng=np.random.default_rng(0), reps=500)
    groups = {(g.task, g.method): g for g in report.groups}
    assert set(groups) == {(t, m) for t in ("cartpole", "drawer") for m in ("env", "preference:scripted")}

    env_cartpole = groups[("cartpole", "env")]
    # The unfinished run (5000) is in the curves but not in the final score.
    assert (env_cartpole.runs, env_cartpole.finished, env_cartpole.partial) == (5, 4, False)
    assert env_cartpole.final_return.point == pytest.approx(250.0)  # mean of 200 and 300
    assert env_cartpole.final_return.low <= 250.0 <= env_cartpole.final_return.high
    assert env_cartpole.return_curve.steps == (100, 200)
    assert env_cartpole.return_curve.mean == pytest.approx((6600 / 2 / 5, 6600 / 5))
    assert env_cartpole.success_rate is None and env_cartpole.labels_per_run is None

    pref_cartpole = groups[("cartpole", "preference:scripted")]
    assert pref_cartpole.labels_per_run == pytest.approx(150.0)
    assert pref_cartpole.cost_usd_total == pytest.approx(1.5)
    assert pref_cartpole.label_accuracy == pytest.approx(0.85)  # 0.8, 0.9, 0.8, 0.9

    # Per-run success 1, 0.5, 0, 1 -> mean 0.625.
    env_drawer = groups[("drawer", "env")]
    assert env_drawer.success_rate is not None and env_drawer.success_rate.point == pytest.approx(0.625)
    assert env_drawer.success_curve is not None and env_drawer.success_curve.mean == pytest.approx((0.625, 0.625))
    assert groups[("drawer", "preference:scripted")].final_return.point == pytest.approx(100.0)

    # Normalised per task (cartpole by 0..1000, drawer by 0..100):
    # env [0.1, 0.2, 0.3, 1.0, 0.5 x4] -> IQM of 0.3, 0.5, 0.5, 0.5 = 0.45;
    # preference [0 x4, 0, 1, 1, 1] -> IQM of 0, 0, 0, 1 = 0.25.
    assert report.overall["env"].point == pytest.approx(0.45)
    assert report.overall["preference:scripted"].point == pytest.approx(0.25)
    assert report.overall["env"].n == 8


def test_report_files_hold_the_numbers(runs_root: Path, tmp_path: Path) -> None:
    report = build_report(find_runs([runs_root]), rng=np.random.default_rng(0), reps=300)
    written = write_report(report, tmp_path / "out", title="Label study")
    for name in (RETURN_CURVES, SUCCESS_CURVES, TRAINING_CURVES, FINAL_IQM):
        assert written[name].read_bytes().startswith(PNG_MAGIC)

    markdown = written["markdown"].read_text()
    assert markdown.startswith("# Label study")
    row = next(line for line in markdown.splitlines() if line.startswith("| cartpole | env |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    interval = report.groups[0].final_return
    assert cells[2:5] == ["5 (4)", "200", f"250.0 [{interval.low:.1f}, {interval.high:.1f}]"]
    pref_row = next(line for line in markdown.splitlines() if line.startswith("| cartpole | preference:scripted |"))
    assert pref_row.rstrip().endswith("| 150 | 85% | 1.5000 |")
    assert re.search(r"\| drawer \| env \| 4 \(4\) \| 200 \| 50\.0 \[.*\] \| 62% \[", markdown)
    assert "| env | 0.450 [" in markdown
    assert f"## {SECTION_TITLES[FINAL_IQM]}\n\n![{SECTION_TITLES[FINAL_IQM]}]({FINAL_IQM})" in markdown

    page = written["html"].read_text()
    assert "<td>250.0 [" in page and "<td>1.5000</td>" in page
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 4 and base64.b64decode(embedded[0]) == written[RETURN_CURVES].read_bytes()
    assert 'src="' + RETURN_CURVES not in page  # nothing refers to files beside the page
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert "Evaluation return" in headings and not any(".png" in h for h in headings)  # titled, not file names

    data = json.loads(written["json"].read_text())
    assert data["groups"][0]["final_return"]["point"] == pytest.approx(250.0)


def test_report_is_deterministic_for_a_seed(runs_root: Path) -> None:
    runs = find_runs([runs_root])
    first = build_report(runs, rng=np.random.default_rng(3), reps=200)
    second = build_report(runs, rng=np.random.default_rng(3), reps=200)
    assert first == second


def test_partial_group_and_sweep_labels(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    make_run(root, "a", preset="walker", reward="preference", seed=0, final=10.0, finished=False, labels=60, cost=0.1)
    make_run(root, "b", preset="walker", reward="preference", seed=1, final=30.0, finished=False, labels=80, cost=0.2)
    (root / MANIFEST_NAME).write_text(json.dumps({"runs": {"a": {"method": "noisy"}, "b": {"method": "noisy"}}}))
    assert load_run(root / "a").method == "noisy"  # the sweep's label wins over reward + backend
    config = json.loads((root / "b" / "config.json").read_text())
    (root / "b" / "config.json").write_text(json.dumps({**config, "backend_options": ["eps_mistake=0.2"]}))
    (root / MANIFEST_NAME).unlink()
    assert load_run(root / "b").method == "preference:scripted[eps_mistake=0.2]"
    (root / MANIFEST_NAME).write_text(json.dumps({"runs": {"a": {"method": "noisy"}, "b": {"method": "noisy"}}}))
    (group,) = build_report(find_runs([root / "a", root / "b"]), rng=np.random.default_rng(0), reps=100).groups
    assert group.partial and group.finished == 0 and group.final_return.point == pytest.approx(20.0)
    # Without summary.json, labels and cost are the latest values in metrics.csv.
    assert group.labels_per_run == pytest.approx(70.0) and group.cost_usd_total == pytest.approx(0.3)


def test_unreadable_runs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        find_runs([tmp_path / "nope"])
    with pytest.raises(UserError, match="no run folders"):
        find_runs([tmp_path])
    run = make_run(tmp_path, "r", preset="p", reward="env", seed=0, final=1.0)
    with (run / "eval.jsonl").open("a") as handle:
        handle.write('{"step": 300, "retu')  # killed mid-write: ignored
    assert [p.step for p in load_run(run).evals] == [100, 200]
    (run / "eval.jsonl").write_text('{"step": 1}\n{"step": 2, "returns": [1]}\n')
    with pytest.raises(UserError, match="eval.jsonl:1"):
        load_run(run)


def test_report_cli(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["report", str(runs_root), "--out", str(out), "--reps", "200"]) == 0
    printed = capsys.readouterr().out
    assert "| cartpole | env | 5 (4) | 200 | 250.0 [" in printed
    assert (out / "report.html").exists() and (out / FINAL_IQM).exists()
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_training_curves_come_from_metrics_csv(runs_root: Path) -> None:
    report = build_report(find_runs([runs_root]), rng=np.random.default_rng(0), reps=100)
    group = report.groups[0]
    curve = group.training["train/episode_return"]
    assert curve.steps == (100, 200) and curve.mean == (1.0, 2.0)
    assert "reward/train_acc" not in group.training  # a column no run wrote is not drawn


def _figures(monkeypatch: pytest.MonkeyPatch) -> list:
    figures: list = []
    monkeypatch.setattr(report_module, "_png", lambda fig: figures.append(fig) or PNG_MAGIC)
    return figures


def test_a_run_with_one_evaluation_is_drawn_with_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first run evaluates once: a line through one point would draw nothing."""
    run = tmp_path / "runs" / "short"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"preset": "cartpole", "reward": "preference", "backend": "scripted",
                                                 "seed": 0}))
    (run / "eval.jsonl").write_text(json.dumps({"step": 6000, "returns": [10.0, 12.0], "successes": None}) + "\n")
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", "train/episode_return", "train/learned_return",
                                         "feedback/round_label_accuracy", "reward/train_acc"])
        writer.writeheader()
        for step in (1000, 2000, 3000):
            writer.writerow({"step": step, "train/episode_return": step / 100, "train/learned_return": -step / 1000})
        writer.writerow({"step": 3000, "feedback/round_label_accuracy": "nan", "reward/train_acc": 0.9})
    figures = _figures(monkeypatch)
    write_report(build_report(find_runs([run]), rng=np.random.default_rng(0), reps=50), tmp_path / "out")
    evaluation, training = figures[0], figures[1]
    [point] = evaluation.axes[0].lines
    assert point.get_marker() == "o" and list(point.get_xdata()) == [6000]
    titles = [ax.get_title() for ax in training.axes]
    # The label-accuracy column held only NaN (no ground truth): it is left out, the rest drawn.
    assert titles == ["cartpole: episode return (env reward)", "cartpole: episode return (learned reward)",
                      "cartpole: reward-fit accuracy"]
    assert list(training.axes[0].lines[0].get_ydata()) == [10.0, 20.0, 30.0]
