"""Sweeps: grid expansion, the local process pool, resuming, stopping, and Ray (if installed).

The runs are a small fake training script written to tmp_path that behaves like
``rlvlmf train`` on its run folder (starts from the config.json the sweep saved, writes
eval.jsonl and summary.json when finished, ``--resume`` continues, refuses a started run
without it) and notes each invocation. The sweep builds real configs, so the tasks are real:
pendulum and the tiny point env.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlvlmf.cli import main
from rlvlmf.errors import ConfigError, MissingDependencyError
from rlvlmf.evaluation.sweep import (
    PYTHON,
    EnvTask,
    RunSpec,
    RunState,
    Variant,
    expand_grid,
    method_label,
    parse_names,
    parse_seeds,
    read_manifest,
    run_state,
    run_sweep,
    train_command,
)
from rlvlmf.training.builder import load_config

FAKE_TRAIN = textwrap.dedent(
    """
    import argparse, json, os, sys, time
    from pathlib import Path

    parser = argparse.ArgumentParser()
    for flag in ("--config", "--out", "--name", "--store", "--resume"):
        parser.add_argument(flag)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.resume:
        run = Path(args.resume)
        if (run / "summary.json").exists():
            sys.exit(0)
        config = json.loads((run / "config.json").read_text())
        kind = "resume"
    else:
        run = Path(args.out) / args.name
        if (run / "eval.jsonl").exists():
            sys.exit("refusing: the run has started, use --resume")
        config = json.loads(Path(args.config).read_text())
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(config))
        kind = "fresh"
    with open(run / "invocations.txt", "a") as handle:
        handle.write(kind + "\\n")
    (run / "store.txt").write_text(args.store or "")
    if config["seed"] == 13:
        sys.exit(3)
    evals = run / "eval.jsonl"
    done = [json.loads(line)["step"] for line in evals.read_text().splitlines()] if evals.exists() else []
    for step in range(100, min(config["steps"], 300) + 1, 100):
        if step in done:
            continue
        time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0.05")))
        returns = [config["seed"] * 10 + step / 100 + i for i in range(3)]
        with open(evals, "a") as handle:
            handle.write(json.dumps({"step": step, "returns": returns, "successes": None, "lengths": [5] * 3}) + "\\n")
    (run / "summary.json").write_text(json.dumps({"steps": config["steps"], "labels": 0, "cost_usd": 0.0}))
    """
)


@pytest.fixture
def fake_train(tmp_path: Path):
    """A ``command_for`` that runs the fake script with the real command's arguments."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)

    def command_for(spec: RunSpec, state: RunState) -> list[str]:
        real = train_command(spec, state)
        assert real[:4] == [PYTHON, "-m", "rlvlmf", "train"]
        return [PYTHON, str(script), *real[4:]]

    return command_for


# Two real tasks whose configs build in milliseconds; seed 13 makes the fake training fail.
POINT = EnvTask("gym:rlvlmf.testing.point_env:PointReach-v0", "to reach the red dot")
TASKS = ["pendulum", POINT]


def invocations(run_dir: Path) -> list[str]:
    return (run_dir / "invocations.txt").read_text().split()


def test_parse_seeds_and_names() -> None:
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("3, 0-1,3") == (3, 0, 1)
    for bad in ("", "a", "2-1", "-1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    assert parse_names(" a, b ,") == ("a", "b")
    with pytest.raises(ConfigError, match="at least one"):
        parse_names(" , ")


def test_expand_grid_orders_seeds_outermost_and_builds_each_runs_config(tmp_path: Path) -> None:
    variant = Variant.from_args("preference", "scripted", ["labeler.max_queries=7"])
    assert variant.name == method_label("preference", "scripted") == "preference:scripted"
    assert method_label("env", "scripted") == "env"  # the backend is irrelevant without preferences
    assert "/" not in expand_grid(["dmc/cartpole"], [0], [variant], out=tmp_path)[0].name
    specs = expand_grid(TASKS, [0, 1], [variant], out=tmp_path, steps=50, store=tmp_path / "q")
    assert [(s.seed, s.preset) for s in specs] == [(0, "pendulum"), (0, POINT.name), (1, "pendulum"), (1, POINT.name)]
    assert specs[0].run_dir.parent == tmp_path.resolve()
    config = specs[0].train_config()
    assert (config.preset, config.seed, config.steps, config.reward.flag, config.backend) == (
        "pendulum", 0, 50, "preference", "scripted"
    )
    assert config.labeler.max_queries == 7
    point = specs[3].train_config()
    assert (point.preset, point.env, point.goal, point.seed) == ("", POINT.env, POINT.goal, 1)
    # A new run starts from the config.json the sweep saves; a partial one resumes. Both use the sweep's store.
    store = str((tmp_path / "q").resolve())
    fresh, resume = train_command(specs[0], RunState.NEW), train_command(specs[0], RunState.PARTIAL)
    for flag, value in [("--config", str(specs[0].run_dir / "config.json")), ("--out", str(tmp_path.resolve())),
                        ("--name", specs[0].name), ("--store", store)]:
        assert fresh[fresh.index(flag) + 1] == value
    assert resume[resume.index("--resume") + 1] == str(specs[0].run_dir) and resume[resume.index("--store") + 1] == store
    assert "--config" not in resume
    with pytest.raises(ConfigError, match="clash"):
        expand_grid(["a"], [0], [Variant("m x"), Variant("m/x")], out=tmp_path)
    with pytest.raises(ConfigError, match="key=value"):
        Variant("m", overrides=("nokey",))


def test_local_sweep_runs_the_grid(tmp_path: Path, fake_train) -> None:
    specs = expand_grid(TASKS, [0, 1], [Variant("env", reward="env")], out=tmp_path / "runs")
    seen: list[str] = []
    result = run_sweep(specs, workers=2, command_for=fake_train, on_done=lambda o: seen.append(o.spec.name))
    assert not result.failed and sorted(seen) == sorted(s.name for s in specs)
    for spec in specs:
        assert run_state(spec.run_dir) is RunState.FINISHED
        assert invocations(spec.run_dir) == ["fresh"]
        assert len((spec.run_dir / "eval.jsonl").read_text().splitlines()) == 3
        assert (tmp_path / "runs" / "logs" / f"{spec.name}.log").exists()
        assert load_config(spec.run_dir) == spec.train_config()  # the validated config the run started from
    manifest = read_manifest(tmp_path / "runs")
    assert {manifest[s.name]["seed"] for s in specs} == {0, 1} and manifest[specs[0].name]["method"] == "env"


def test_sweep_resumes_without_redoing_finished_runs(tmp_path: Path, fake_train) -> None:
    specs = expand_grid(TASKS, [0, 1], [Variant("env", reward="env")], out=tmp_path, store=tmp_path / "q")
    finished, partial = specs[0], specs[1]
    run_sweep([finished], command_for=fake_train)
    # A half-finished run: folder, config and one evaluation, no summary.
    partial.run_dir.mkdir(parents=True)
    (partial.run_dir / "config.json").write_text(json.dumps({"preset": "pendulum", "seed": 0, "steps": 300}))
    (partial.run_dir / "eval.jsonl").write_text(json.dumps({"step": 100, "returns": [1.0], "successes": None}) + "\n")
    assert [run_state(s.run_dir) for s in specs] == [RunState.FINISHED, RunState.PARTIAL, RunState.NEW, RunState.NEW]

    result = run_sweep(specs, workers=2, command_for=fake_train)

    assert not result.failed
    assert [o.state for o in result.outcomes] == [RunState.FINISHED, RunState.PARTIAL, RunState.NEW, RunState.NEW]
    assert result.outcomes[0].returncode is None and len(result.skipped) == 1
    assert invocations(finished.run_dir) == ["fresh"]
    assert invocations(partial.run_dir) == ["resume"]
    steps = [json.loads(line)["step"] for line in (partial.run_dir / "eval.jsonl").read_text().splitlines()]
    assert steps == [100, 200, 300]  # continued, not restarted
    assert (partial.run_dir / "store.txt").read_text() == str((tmp_path / "q").resolve())  # the sweep's store
    assert all(invocations(s.run_dir) == ["fresh"] for s in specs[2:])


def test_reusing_a_name_with_other_settings_is_refused(tmp_path: Path, fake_train) -> None:
    first = expand_grid(["pendulum"], [0], [Variant.from_args("env", overrides=["knn_k=3"])], out=tmp_path, steps=300)
    run_sweep(first, command_for=fake_train)
    for other in (Variant.from_args("env", overrides=["knn_k=4"]), Variant.from_args("env", overrides=["knn_k=3"])):
        steps = 300 if other.overrides != ("knn_k=3",) else 200
        clash = expand_grid(["pendulum"], [0], [other], out=tmp_path, steps=steps)
        assert clash[0].name == first[0].name
        with pytest.raises(ConfigError, match="other settings"):
            run_sweep(clash, command_for=fake_train)
    named = expand_grid(["pendulum"], [0], [Variant.from_args("env", overrides=["knn_k=4"], name="env-k4")], out=tmp_path)
    assert not run_sweep(named, command_for=fake_train).failed  # a distinct name is fine
    assert invocations(first[0].run_dir) == ["fresh"]


def test_failed_run_is_reported_and_the_rest_complete(tmp_path: Path, fake_train) -> None:
    specs = expand_grid(["pendulum"], [13, 0], [Variant("env", reward="env")], out=tmp_path)
    result = run_sweep(specs, workers=1, command_for=fake_train)
    assert [o.spec.seed for o in result.failed] == [13] and result.failed[0].returncode == 3
    assert run_state(specs[1].run_dir) is RunState.FINISHED


def test_bad_setting_stops_the_sweep_before_any_run(tmp_path: Path, fake_train) -> None:
    from rlvlmf.errors import UserError

    specs = expand_grid(TASKS, [0], [Variant.from_args("env", overrides=["sac.batchsize=3"])], out=tmp_path)
    with pytest.raises(UserError, match=f"run {specs[0].name}: unknown config key 'sac.batchsize'"):
        run_sweep(specs, command_for=fake_train)
    assert not any(s.run_dir.exists() for s in specs)


def test_run_that_cannot_start_fails_alone(tmp_path: Path, fake_train) -> None:
    specs = expand_grid(TASKS, [0], [Variant("env", reward="env")], out=tmp_path)

    def command_for(spec: RunSpec, state: RunState) -> list[str]:
        return [str(tmp_path / "no-such-program")] if spec.preset == "pendulum" else fake_train(spec, state)

    result = run_sweep(specs, command_for=command_for)
    assert [(o.spec.preset, o.returncode) for o in result.failed] == [("pendulum", 127)]
    assert "could not start" in (tmp_path / "logs" / f"{specs[0].name}.log").read_text()
    assert run_state(specs[1].run_dir) is RunState.FINISHED


DRIVER = textwrap.dedent(
    """
    import signal
    from rlvlmf.evaluation.sweep import PYTHON, EnvTask, Variant, expand_grid, run_sweep, train_command

    def stop(signum, frame):
        raise SystemExit(143)

    def command_for(spec, state):
        return [PYTHON, {script!r}, *train_command(spec, state)[4:]]

    signal.signal(signal.SIGTERM, stop)
    tasks = ["pendulum", EnvTask("gym:rlvlmf.testing.point_env:PointReach-v0", "to reach the red dot")]
    specs = expand_grid(tasks, [0, 1], [Variant("env", reward="env")], out={out!r})
    run_sweep(specs, workers=1, command_for=command_for)
    """
)


def test_sweep_stopped_midway_resumes(tmp_path: Path) -> None:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    out = tmp_path / "runs"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(out=str(out), script=str(script)))
    specs = expand_grid(TASKS, [0, 1], [Variant("env", reward="env")], out=out)
    env = {**os.environ, "FAKE_TRAIN_SLEEP": "0.3"}
    process = subprocess.Popen([sys.executable, str(driver)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (specs[0].run_dir / "summary.json").exists():
            assert time.monotonic() < deadline and process.poll() is None, "first run never finished"
            time.sleep(0.05)
        time.sleep(0.4)  # the second run is under way
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
    finally:
        if process.poll() is None:
            process.kill()
    states = [run_state(s.run_dir) for s in specs]
    assert states[0] is RunState.FINISHED and RunState.NEW in states  # stopped before the end

    result = run_sweep(specs, workers=2, command_for=lambda spec, state: [PYTHON, str(script), *train_command(spec, state)[4:]])

    assert not result.failed and all(run_state(s.run_dir) is RunState.FINISHED for s in specs)
    assert invocations(specs[0].run_dir) == ["fresh"]  # not redone
    for spec, before in zip(specs[1:], states[1:]):
        # On a loaded machine a run may have finished before the stop: it is not redone either.
        expected = {RunState.PARTIAL: ["fresh", "resume"], RunState.NEW: ["fresh"], RunState.FINISHED: ["fresh"]}[before]
        assert invocations(spec.run_dir) == expected


def test_ray_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_train) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail even where it is installed
    specs = expand_grid(["pendulum"], [0], [Variant("env", reward="env")], out=tmp_path)
    with pytest.raises(MissingDependencyError, match=r"rlvlmf\[ray\]"):
        run_sweep(specs, ray_address="local", command_for=fake_train)


def test_ray_sweep_completes(tmp_path: Path, fake_train) -> None:
    ray = pytest.importorskip("ray")
    specs = expand_grid(TASKS, [0, 1], [Variant("env", reward="env")], out=tmp_path)
    try:  # "local" makes run_sweep start a fresh single-machine Ray instance
        result = run_sweep(specs, workers=2, ray_address="local", command_for=fake_train)
    finally:
        ray.shutdown()
    assert not result.failed
    assert all(invocations(s.run_dir) == ["fresh"] for s in specs)


def test_cli_dry_run_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["sweep", "--presets", "pendulum", "--seeds", "0-3", "--reward", "env", "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("new") and " train --config " in line for line in lines)
    assert not out.exists()  # a dry run starts nothing
    # ... but it builds every run's config, so a bad setting shows there.
    assert main(["sweep", "--presets", "pendulum", "--set", "knn_k=0", "--out", str(out), "--dry-run"]) == 2
    assert "knn_k must be >= 1" in capsys.readouterr().err and not out.exists()
    assert main(["sweep", "--presets", "a", "--seeds", "x", "--out", str(out)]) == 2
    assert "seeds" in capsys.readouterr().err


TINY_RUN = [  # 200 steps of pendulum: small nets, two short evaluations, no video
    "seed_steps=50", "unsup_steps=50", "num_interact=100", "reward_batch=8", "max_feedback=16",
    "eval_every=100", "eval_episodes=2", "eval_video=false", "checkpoint_every=100",
    "sac.hidden_sizes=32,32", "sac.batch_size=32",
]


@pytest.mark.skipif(
    importlib.util.find_spec("rlvlmf.cli.train") is None or importlib.util.find_spec("rlvlmf.training.loop") is None,
    reason="rlvlmf train is not written yet",
)
def test_real_tiny_sweep_then_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "runs", tmp_path / "report"
    common = ["--steps", "200", "--out", str(out), "--store", str(tmp_path / "queries"), "--workers", "2"]
    for item in TINY_RUN:
        common += ["--set", item]
    assert main(["sweep", "--presets", "pendulum", "--seeds", "0-1", "--reward", "env", *common]) == 0
    assert main(["sweep", "--presets", "pendulum", "--seeds", "0", "--reward", "preference", "--backend", "scripted",
                 "--set", "reward_model.input=state", *common]) == 0
    specs = [*expand_grid(["pendulum"], [0, 1], [Variant.from_args("env")], out=out),
             *expand_grid(["pendulum"], [0], [Variant.from_args("preference", "scripted")], out=out)]
    assert all(run_state(s.run_dir) is RunState.FINISHED for s in specs)
    # The same sweep again finds every run finished and starts nothing.
    capsys.readouterr()
    assert main(["sweep", "--presets", "pendulum", "--seeds", "0-1", "--reward", "env", *common]) == 0
    assert capsys.readouterr().out.count("already finished, skipped") == 2

    assert main(["report", str(out), "--out", str(report), "--reps", "200"]) == 0
    data = json.loads((report / "report.json").read_text())
    methods = {g["method"]: g for g in data["groups"]}
    assert set(methods) == {"env", "preference:scripted"}
    assert methods["env"]["finished"] == 2 and methods["preference:scripted"]["labels_per_run"] > 0


def test_a_second_sweep_over_the_same_manifest_is_refused_naming_the_first(tmp_path: Path, fake_train) -> None:
    from rlvlmf.errors import UserError

    out = tmp_path / "runs"
    out.mkdir()
    specs = expand_grid(["pendulum"], [0], [Variant("env", reward="env")], out=out)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rlvlmf.utils.lock import ProcessLock; "
         "ProcessLock(sys.argv[1], 'x').acquire(); print('held', flush=True); time.sleep(120)", str(out / ".sweep.json.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"sweep {out / 'sweep.json'} is in use by process {holder.pid}"):
            run_sweep(specs, command_for=fake_train)
        assert run_state(specs[0].run_dir) is RunState.NEW  # nothing was started
    finally:
        holder.kill()
        holder.wait()
    assert not run_sweep(specs, command_for=fake_train).failed  # the lock died with its holder
